"""
Registration of SoftQ and SoftQLambda in rl-zoo3.

rl-zoo3 looks algorithms up in shared module-level dictionaries (``rl_zoo3.utils.ALGOS``,
``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``), and its scripts build their
``--algo`` choices from ``ALGOS`` when they parse the command line. :func:`register` adds our algorithms to those
dictionaries in place (rl-zoo3's own way of adding an algorithm), so it must run before any rl-zoo3 script parses its
arguments.
"""

from pathlib import Path

from rl_zoo3 import hyperparams_opt
from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.zoo.minatar import register_minatar_envs
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


def register() -> None:
    """
    Make ``softq`` and ``softq_lambda`` available to rl-zoo3 (idempotent).

    Adds them, in place, to ``rl_zoo3.utils.ALGOS`` (call this before an rl-zoo3 script builds its
    ``--algo`` choices), to ``rl_zoo3.hyperparams_opt.HYPERPARAMS_SAMPLER`` and ``HYPERPARAMS_CONVERTER``
    (for ``-optimize`` and ``--trial-id``). rl-zoo3's own ``ExperimentManager`` then needs ``config=``
    :func:`hyperparams_path` (``--conf-file``) for our algorithms; :class:`sb3_softq.zoo.ExperimentManager`, which
    ``python -m sb3_softq.zoo train`` uses, defaults to it.

    .. code-block:: python

        from rl_zoo3.enjoy import enjoy

        from sb3_softq.zoo import register

        register()
        enjoy()  # reads sys.argv, e.g. --algo softq_lambda --env CartPole-v1 -f logs/
    """
    ALGOS.update(ZOO_ALGOS)
    # Like rl-zoo3's `import_envs` for the environment packages it knows: MinAtar's games, when MinAtar is installed
    register_minatar_envs()
    hyperparams_opt.HYPERPARAMS_SAMPLER.update(HYPERPARAMS_SAMPLER)
    hyperparams_opt.HYPERPARAMS_CONVERTER.update(HYPERPARAMS_CONVERTER)
