"""
Reading an rl-zoo3 hyperparameter entry into keyword arguments for a plain Python run, with rl-zoo3's conventions
(``policy_kwargs`` as a Python expression, ``lin_<value>`` linear schedules), for scripts, benchmarks and tests that
train without the rl-zoo3 command line.
"""

from typing import Any

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


def load_hyperparams(algo: str, env_id: str, path: str | None = None) -> tuple[str, dict[str, Any], int]:
    """
    One environment's entry of an rl-zoo3 hyperparameter file, ready for ``AlgoClass(policy, env, **kwargs)``.

    :param algo: ``"softq"`` or ``"softq_lambda"`` (the package's own files), or any rl-zoo3 algorithm name when
        ``path`` is given
    :param env_id: the environment id (a key of the file)
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
    if env_id not in entries:
        raise ValueError(f"`env_id` {env_id!r} has no entry in {path}; entries: {sorted(entries)}")
    entry = dict(entries[env_id])
    needs_zoo = sorted(set(entry) & set(ENVIRONMENT_KEYS)) + (["n_envs"] if entry.get("n_envs", 1) != 1 else [])
    if needs_zoo:
        raise ValueError(f"The {env_id} entry of {path} uses {needs_zoo}: train it with `python -m sb3_softq.zoo train`")
    # rl-zoo3's conversions (ExperimentManager._preprocess_hyperparams)
    kwargs = {key: value for key, value in entry.items() if key not in EXPERIMENT_KEYS}
    for key in SCHEDULE_KEYS:
        if isinstance(kwargs.get(key), str):
            kwargs[key] = linear_schedule(float(kwargs[key].split("_")[1]))
    if isinstance(kwargs.get("train_freq"), list):
        kwargs["train_freq"] = tuple(kwargs["train_freq"])
    # Expressions are evaluated with the names rl-zoo3 evaluates them with (`nn`, `th`, ...); imported here because
    # rl-zoo3's experiment manager imports Optuna and every algorithm
    from rl_zoo3 import exp_manager

    for key in EXPRESSION_KEYS:
        if isinstance(kwargs.get(key), str):
            kwargs[key] = eval(kwargs[key], dict(vars(exp_manager)))
    return entry["policy"], kwargs, int(float(entry["n_timesteps"]))
