"""
Registration of SoftQ and SoftQLambda in rl-zoo3.

rl-zoo3 looks algorithms up in shared module-level dictionaries (``rl_zoo3.utils.ALGOS``,
``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``), and its scripts build their
``--algo`` choices from ``ALGOS`` when they parse the command line. :func:`register` adds our algorithms to those
dictionaries in place, so it must run before any rl-zoo3 script parses its arguments.
"""

import functools
from pathlib import Path
from typing import Any

import rl_zoo3
from rl_zoo3 import hyperparams_opt
from rl_zoo3.exp_manager import ExperimentManager
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.zoo.samplers import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

#: rl-zoo3 names of the algorithms of this package
ZOO_ALGOS: dict[str, type[BaseAlgorithm]] = {
    "softq": SoftQ,
    "softq_lambda": SoftQLambda,
}

#: Folder holding ``<algo>.yml`` (inside the installed package; in a source checkout it links to ``hyperparams/``)
HYPERPARAMS_DIR = Path(__file__).resolve().parent.parent / "hyperparams"


def hyperparams_path(algo: str) -> str:
    """
    Path of the hyperparameter file shipped with the package for one of our algorithms.

    :param algo: ``"softq"`` or ``"softq_lambda"``
    :return: path of ``hyperparams/<algo>.yml``
    """
    if algo not in ZOO_ALGOS:
        raise ValueError(f"Unknown algorithm {algo!r}, expected one of {list(ZOO_ALGOS)}")
    return str(HYPERPARAMS_DIR / f"{algo}.yml")


def _rl_zoo_default_config(algo: str) -> str:
    """
    The config path rl-zoo3's ``ExperimentManager`` falls back to when no ``--conf-file`` is given
    (a file of rl-zoo3 itself, which does not exist for our algorithms).

    :param algo: algorithm name
    :return: that path, computed as ``ExperimentManager.__init__`` does
    """
    package_dir = Path(rl_zoo3.__file__).parent
    default_dir = package_dir if (package_dir / "hyperparams").is_dir() else package_dir.parent
    return str(default_dir / f"hyperparams/{algo}.yml")


class _TrialNumber(int):
    """
    A trial number that is true even when it is 0.

    rl-zoo3 2.9.2 tests ``if self.storage and self.study_name and self.trial_id`` before reloading a trial,
    which silently ignores ``--trial-id 0``.
    """

    def __bool__(self) -> bool:
        return True


def _patch_experiment_manager() -> None:
    """
    Wrap ``ExperimentManager.__init__`` so that, for our algorithms only, a missing ``--conf-file`` defaults to
    :func:`hyperparams_path` and ``--trial-id 0`` is honoured. Other algorithms are left untouched.
    """
    init = ExperimentManager.__init__
    if getattr(init, "_sb3_softq_wrapped", False):
        return

    @functools.wraps(init)
    def __init__(self: ExperimentManager, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if self.algo not in ZOO_ALGOS:
            return
        if self.config == _rl_zoo_default_config(self.algo):
            self.config = hyperparams_path(self.algo)
        if self.trial_id is not None and not isinstance(self.trial_id, _TrialNumber):
            self.trial_id = _TrialNumber(self.trial_id)

    __init__._sb3_softq_wrapped = True  # type: ignore[attr-defined]
    ExperimentManager.__init__ = __init__  # type: ignore[method-assign]


def register() -> None:
    """
    Make ``softq`` and ``softq_lambda`` available to rl-zoo3 (idempotent).

    Adds them, in place, to ``rl_zoo3.utils.ALGOS`` (call this before an rl-zoo3 script builds its
    ``--algo`` choices), to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``
    (for ``-optimize`` and ``--trial-id``), and makes the ``ExperimentManager`` default to the package's
    ``hyperparams/<algo>.yml`` when no ``--conf-file`` is given.

    .. code-block:: python

        from sb3_softq.zoo import register
        from rl_zoo3.train import train

        register()
        train()  # reads sys.argv, e.g. --algo softq_lambda --env CartPole-v1
    """
    ALGOS.update(ZOO_ALGOS)
    hyperparams_opt.HYPERPARAMS_SAMPLER.update(HYPERPARAMS_SAMPLER)
    hyperparams_opt.HYPERPARAMS_CONVERTER.update(HYPERPARAMS_CONVERTER)
    _patch_experiment_manager()
