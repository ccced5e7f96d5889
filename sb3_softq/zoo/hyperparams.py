"""
Reading an rl-zoo3 hyperparameter entry into keyword arguments for a plain Python run, for scripts, benchmarks and
tests that train without the rl-zoo3 command line. The entry is read and converted by rl-zoo3's own
``ExperimentManager`` (``read_hyperparameters`` and ``_preprocess_hyperparams``: fallback entries, ``lin_<value>``
schedules, ``policy_kwargs`` evaluated with rl-zoo3's names, ``train_freq`` lists).
"""

import argparse
import contextlib
import io
import tempfile
from typing import Any

import gymnasium as gym

from sb3_softq.zoo.experiment_manager import ConfigurationError, ExperimentManager
from sb3_softq.zoo.minatar import register_minatar_envs
from sb3_softq.zoo.registration import ZOO_ALGOS, hyperparams_path

#: Keys that need rl-zoo3's environment set-up: use ``python -m sb3_softq.zoo train`` for those entries
ENVIRONMENT_KEYS = ("env_wrapper", "frame_stack", "normalize", "callback", "vec_env_wrapper", "env_kwargs", "monitor_kwargs")


def load_hyperparams(algo: str, env_id: str, path: str | None = None) -> tuple[str, dict[str, Any], int]:
    """
    One environment's entry of an rl-zoo3 hyperparameter file, ready for ``AlgoClass(policy, env, **kwargs)``.

    As rl-zoo3 does, an environment without an entry of its own takes the ``atari`` entry if it is an Atari game, else
    the ``default`` entry.

    :param algo: ``"softq"`` or ``"softq_lambda"`` (the package's own files), or any rl-zoo3 algorithm name when
        ``path`` is given
    :param env_id: the environment id (a key of the file, or a registered environment that falls back as rl-zoo3 does)
    :param path: the YAML file to read; by default the package's ``hyperparams/<algo>.yml``
    :return: the policy name, the algorithm's keyword arguments and the entry's ``n_timesteps``
    :raises ValueError: unknown algorithm or environment, or an entry needing rl-zoo3's environment set-up
    """
    if path is None:
        if algo not in ZOO_ALGOS:
            raise ValueError(f"`algo` must be one of {list(ZOO_ALGOS)} when no `path` is given, got {algo!r}")
        path = hyperparams_path(algo)
    register_minatar_envs()  # as `python -m sb3_softq.zoo` does: MinAtar's games, when MinAtar is installed
    if env_id not in gym.envs.registry:
        raise ValueError(f"`env_id` {env_id!r} is not a registered environment")
    with tempfile.TemporaryDirectory() as log_folder, contextlib.redirect_stdout(io.StringIO()):
        manager = ExperimentManager(argparse.Namespace(), algo, env_id, log_folder, config=path)
        try:
            entry, _ = manager.read_hyperparameters()
        except ConfigurationError:
            raise
        except ValueError as error:  # no entry for the environment, nor a fallback one
            raise ValueError(f"`env_id` {env_id!r} has no entry in {path} (nor a `default` one): {error}") from error
        entry = dict(entry)
        needs_zoo = sorted(set(entry) & set(ENVIRONMENT_KEYS)) + (["n_envs"] if entry.get("n_envs", 1) != 1 else [])
        if needs_zoo:
            raise ValueError(
                f"The entry for {env_id} in {path} uses {needs_zoo}: train it with `python -m sb3_softq.zoo train`"
            )
        kwargs, _, _, _ = manager._preprocess_hyperparams(entry)
    policy = kwargs.pop("policy")
    return policy, kwargs, int(manager.n_timesteps)
