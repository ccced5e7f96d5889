"""
Reading an rl-zoo3 hyperparameter entry into keyword arguments for a plain Python run, with rl-zoo3's conventions
(``policy_kwargs`` as a Python expression, ``lin_<value>`` linear schedules), for scripts, benchmarks and tests that
train without the rl-zoo3 command line.
"""

from typing import Any

import gymnasium as gym
import yaml
from rl_zoo3.utils import linear_schedule

from sb3_softq.zoo.registration import ZOO_ALGOS, hyperparams_path

#: Keys of an rl-zoo3 entry that configure the experiment rather than the algorithm
EXPERIMENT_KEYS = ("n_timesteps", "policy", "n_envs")
#: Keys that need rl-zoo3's environment set-up: use ``python -m sb3_softq.zoo train`` for those entries
ENVIRONMENT_KEYS = ("env_wrapper", "frame_stack", "normalize", "callback", "vec_env_wrapper", "env_kwargs", "monitor_kwargs")
#: Keys whose ``lin_<value>`` strings rl-zoo3 turns into linear schedules
SCHEDULE_KEYS = ("learning_rate", "clip_range", "clip_range_vf", "delta_std")
#: Keys whose strings rl-zoo3 evaluates as Python expressions
EXPRESSION_KEYS = ("policy_kwargs", "replay_buffer_class", "replay_buffer_kwargs")


def _is_atari(env_id: str) -> bool:
    """:return: whether ``env_id`` is a registered Atari game (rl-zoo3's test for its ``atari`` entries)"""
    from rl_zoo3.exp_manager import ExperimentManager

    try:
        return ExperimentManager.is_atari(env_id)
    except (KeyError, gym.error.Error):  # not registered
        return False


def load_hyperparams(algo: str, env_id: str, path: str | None = None) -> tuple[str, dict[str, Any], int]:
    """
    One environment's entry of an rl-zoo3 hyperparameter file, ready for ``AlgoClass(policy, env, **kwargs)``.

    As rl-zoo3 does, an environment without an entry of its own takes the ``atari`` entry if it is an Atari game, else
    the ``default`` entry.

    :param algo: ``"softq"`` or ``"softq_lambda"`` (the package's own files), or any rl-zoo3 algorithm name when
        ``path`` is given
    :param env_id: the environment id (a key of the file, or an environment that falls back as rl-zoo3 does)
    :param path: the YAML file to read; by default the package's ``hyperparams/<algo>.yml``
    :return: the policy name, the algorithm's keyword arguments and the entry's ``n_timesteps``
    :raises ValueError: unknown algorithm or environment, or an entry needing rl-zoo3's environment set-up
    """
    if path is None:
        if algo not in ZOO_ALGOS:
            raise ValueError(f"`algo` must be one of {list(ZOO_ALGOS)} when no `path` is given, got {algo!r}")
        path = hyperparams_path(algo)
    with open(path) as handle:
        entries = yaml.safe_load(handle)
    # Imported here: rl-zoo3's experiment manager imports Optuna and every algorithm
    from rl_zoo3 import exp_manager

    entry_name = env_id
    if entry_name not in entries:  # rl-zoo3's fallbacks (ExperimentManager.read_hyperparameters)
        entry_name = "atari" if "atari" in entries and _is_atari(env_id) else "default"
        if entry_name not in entries:
            raise ValueError(f"`env_id` {env_id!r} has no entry in {path} (nor a `default` one); entries: {sorted(entries)}")
    entry = dict(entries[entry_name])
    needs_zoo = sorted(set(entry) & set(ENVIRONMENT_KEYS)) + (["n_envs"] if entry.get("n_envs", 1) != 1 else [])
    if needs_zoo:
        raise ValueError(f"The {entry_name} entry of {path} uses {needs_zoo}: train it with `python -m sb3_softq.zoo train`")
    # rl-zoo3's conversions (ExperimentManager._preprocess_hyperparams)
    kwargs = {key: value for key, value in entry.items() if key not in EXPERIMENT_KEYS}
    for key in SCHEDULE_KEYS:
        if isinstance(kwargs.get(key), str):
            kwargs[key] = linear_schedule(float(kwargs[key].split("_")[1]))
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    # Expressions are evaluated with the names rl-zoo3 evaluates them with (`nn`, `th`, ...)
    for name in EXPRESSION_KEYS:
        if isinstance(kwargs.get(name), str):
            kwargs[name] = eval(kwargs[name], dict(vars(exp_manager)))
    return entry["policy"], kwargs, int(float(entry["n_timesteps"]))
