"""
Optuna samplers and converters for :class:`~sb3_softq.SoftQ` and :class:`~sb3_softq.SoftQLambda`, in the style of
``rl_zoo3.hyperparams_opt`` (``sample_dqn_params`` / ``convert_offpolicy_params``).

A sampler only *suggests* values (every value it returns is derived from ``trial.params``) and then calls the
converter, which turns the raw Optuna parameters into keyword arguments of the algorithm. rl-zoo3 calls the same
converter on ``study.trials[trial_id].params`` when a trial is reloaded with ``--trial-id``, so a reloaded trial
gets exactly the hyperparameters it was evaluated with.
"""

from typing import Any

import optuna

from sb3_softq.common.traces import TRACES

# Names of the network sizes that can be sampled, as in ``rl_zoo3.hyperparams_opt.convert_offpolicy_params``
NET_ARCH: dict[str, list[int]] = {
    "tiny": [64],
    "small": [64, 64],
    "medium": [256, 256],
    "big": [400, 300],
}

#: Values of ``munchausen_coef`` that can be sampled: off, or the Munchausen-DQN paper's scale (``munchausen_clip``
#: keeps the algorithm's default)
MUNCHAUSEN_COEFS: list[float] = [0.0, 0.9]


def convert_softq_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Convert the raw parameters of a SoftQ (or SoftQLambda) trial into keyword arguments of the algorithm.

    - ``one_minus_gamma`` -> ``gamma``
    - ``batch_size_pow`` -> ``batch_size = 2 ** batch_size_pow``
    - ``train_freq`` and ``subsample_steps`` -> ``gradient_steps = max(train_freq // subsample_steps, 1)``
    - ``net_arch`` (a name of :data:`NET_ARCH`) -> ``policy_kwargs["net_arch"]``
    - ``ent_coef_mode`` ``"fixed"`` (with ``ent_coef``) or ``"auto"`` (with ``target_entropy``, in nats)
      -> ``ent_coef`` and ``target_entropy``
    - ``sequence_length_pow`` -> ``sequence_length = 2 ** sequence_length_pow`` (SoftQLambda)

    Every other parameter (``learning_rate``, ``target_update_interval``, ``n_critics``, ``munchausen_coef``,
    ``trace_lambda``, ``trace``, ...) is passed through unchanged.

    :param sampled_params: the trial's parameters, as in ``trial.params``
    :return: hyperparameters for the algorithm's constructor
    """
    hyperparams = dict(sampled_params)

    if "one_minus_gamma" in hyperparams:
        hyperparams["gamma"] = 1 - hyperparams.pop("one_minus_gamma")

    for name in ["batch_size", "sequence_length"]:
        if f"{name}_pow" in hyperparams:
            hyperparams[name] = 2 ** hyperparams.pop(f"{name}_pow")

    if "subsample_steps" in hyperparams:
        subsample_steps = hyperparams.pop("subsample_steps")
        hyperparams["gradient_steps"] = max(hyperparams["train_freq"] // subsample_steps, 1)

    if "ent_coef_mode" in hyperparams:
        ent_coef_mode = hyperparams.pop("ent_coef_mode")
        if ent_coef_mode == "auto":
            hyperparams["ent_coef"] = "auto"
            hyperparams.setdefault("target_entropy", "auto")
        else:
            # Not sampled with a fixed temperature, and not used: "auto" also replaces a value from the YAML entry
            hyperparams["target_entropy"] = "auto"

    if "net_arch" in hyperparams:
        policy_kwargs = dict(hyperparams.get("policy_kwargs", {}))
        policy_kwargs["net_arch"] = NET_ARCH[hyperparams.pop("net_arch")]
        hyperparams["policy_kwargs"] = policy_kwargs

    return hyperparams


def _suggest_softq_params(trial: optuna.Trial, batch_size_pow_range: tuple[int, int]) -> None:
    """
    Suggest the parameters shared by SoftQ and SoftQLambda (they are then read back from ``trial.params``).

    :param trial: the Optuna trial
    :param batch_size_pow_range: lowest and highest power of two for ``batch_size``
    """
    trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True)
    trial.suggest_int("batch_size_pow", *batch_size_pow_range)
    trial.suggest_float("learning_rate", 1e-5, 0.002, log=True)
    train_freq = trial.suggest_int("train_freq", 1, 10)
    trial.suggest_int("subsample_steps", 1, min(train_freq, 8))
    trial.suggest_int("target_update_interval", 1, 20000, log=True)
    trial.suggest_categorical("net_arch", list(NET_ARCH))
    trial.suggest_int("n_critics", 1, 2)
    trial.suggest_categorical("munchausen_coef", MUNCHAUSEN_COEFS)
    # Temperature: either fixed, or learned to reach a target entropy. The target is an absolute entropy in nats:
    # rl-zoo3 does not pass the number of discrete actions to the converter, and log(2) (two actions) bounds
    # the largest target that is reachable for every discrete action space.
    ent_coef_mode = trial.suggest_categorical("ent_coef_mode", ["fixed", "auto"])
    if ent_coef_mode == "fixed":
        trial.suggest_float("ent_coef", 1e-3, 1.0, log=True)
    else:
        trial.suggest_float("target_entropy", 0.01, 0.6, log=True)


def sample_softq_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for SoftQ hyperparams.

    :param trial: the Optuna trial
    :param n_actions: number of continuous actions (unused: discrete actions only)
    :param n_envs: number of environments (unused)
    :param additional_args: extra information from rl-zoo3 (unused)
    :return: hyperparameters for :class:`~sb3_softq.SoftQ`
    """
    # From 2**5=32 to 2**10=1024 transitions
    _suggest_softq_params(trial, batch_size_pow_range=(5, 10))
    return convert_softq_params(trial.params)


def sample_softq_lambda_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for SoftQLambda hyperparams: the SoftQ ones plus ``trace_lambda``, ``sequence_length`` and ``trace``.

    :param trial: the Optuna trial
    :param n_actions: number of continuous actions (unused: discrete actions only)
    :param n_envs: number of environments (unused)
    :param additional_args: extra information from rl-zoo3 (unused)
    :return: hyperparameters for :class:`~sb3_softq.SoftQLambda`
    """
    # ``batch_size`` counts sequences: from 2**3=8 to 2**7=128 sequences
    _suggest_softq_params(trial, batch_size_pow_range=(3, 7))
    trial.suggest_float("trace_lambda", 0.5, 1.0)
    # From 2**2=4 to 2**5=32 steps per sequence
    trial.suggest_int("sequence_length_pow", 2, 5)
    trial.suggest_categorical("trace", list(TRACES))
    return convert_softq_params(trial.params)


def convert_softq_lambda_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Convert the raw parameters of a SoftQLambda trial (same rules as :func:`convert_softq_params`).

    :param sampled_params: the trial's parameters, as in ``trial.params``
    :return: hyperparameters for :class:`~sb3_softq.SoftQLambda`
    """
    return convert_softq_params(sampled_params)


HYPERPARAMS_SAMPLER = {
    "softq": sample_softq_params,
    "softq_lambda": sample_softq_lambda_params,
}

HYPERPARAMS_CONVERTER = {
    "softq": convert_softq_params,
    "softq_lambda": convert_softq_lambda_params,
}
