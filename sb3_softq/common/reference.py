"""
Reference ("default") policies :math:`\\bar\\pi(a|s)` of the KL-regularised objective
:math:`r_t - \\tau\\,\\mathrm{KL}(\\pi(\\cdot|s_t) \\| \\bar\\pi(\\cdot|s_t))`: validation and conversion of what users pass as
``reference_policy``.
"""

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs
from stable_baselines3.common.utils import obs_as_tensor

LogPriorFn = Callable[[PyTorchObs], th.Tensor]

#: Tolerance on :math:`|\\sum_a \\bar\\pi(a|s) - 1|`.
NORMALISATION_TOLERANCE = 1e-4

#: How many observations, sampled from the observation space, a state-dependent prior is checked on when it is given.
CHECK_BATCH_SIZE = 4


def is_state_dependent(reference_policy: Any) -> bool:
    """
    :param reference_policy: what the user passed as ``reference_policy``
    :return: whether it is a function of the state (a callable, an SB3 policy or model), rather than
        ``None`` (uniform) or a fixed vector of probabilities
    """
    return callable(reference_policy) or isinstance(reference_policy, BaseAlgorithm | BasePolicy)


def validate_reference_probs(reference_policy: Sequence[float] | np.ndarray | th.Tensor, n_actions: int) -> list[float]:
    """
    Check a state-independent reference policy.

    :param reference_policy: probabilities over the ``n_actions`` actions
    :param n_actions: size of the action space
    :return: the probabilities as a list of floats (renormalised exactly)
    :raises ValueError: wrong shape, non-finite, zero or negative entries, or entries not summing to 1
    """
    if isinstance(reference_policy, str | bytes) or not isinstance(reference_policy, Sequence | np.ndarray | th.Tensor):
        raise TypeError(
            "`reference_policy` must be None (uniform), a vector of probabilities, a callable returning log-probabilities, "
            f"or an SB3 policy / model; got {reference_policy!r}"
        )
    probs = th.as_tensor(reference_policy, dtype=th.float64).detach().cpu()
    if probs.shape != (n_actions,):
        raise ValueError(
            f"`reference_policy` must be a vector of {n_actions} probabilities (one per action), a callable or an SB3 "
            f"policy; got an array of shape {tuple(probs.shape)}"
        )
    if not bool(th.isfinite(probs).all()) or bool((probs <= 0).any()):
        raise ValueError(
            f"`reference_policy` probabilities must all be finite and > 0 (the KL to a prior with zero mass is infinite), "
            f"got {probs.tolist()}"
        )
    if abs(float(probs.sum()) - 1.0) > NORMALISATION_TOLERANCE:
        raise ValueError(f"`reference_policy` probabilities must sum to 1, got sum={float(probs.sum()):.6g}")
    return (probs / probs.sum()).tolist()


class _CheckedLogPrior:
    """``log_prior_fn`` whose outputs are checked (shape ``[batch, n_actions]``, normalised); picklable when
    ``log_prior_fn`` is."""

    def __init__(self, log_prior_fn: LogPriorFn, n_actions: int) -> None:
        self.log_prior_fn = log_prior_fn
        self.n_actions = n_actions

    def __call__(self, obs: PyTorchObs) -> th.Tensor:
        log_probs = self.log_prior_fn(obs)
        batch_size = _batch_size(obs)
        if not isinstance(log_probs, th.Tensor) or log_probs.shape != (batch_size, self.n_actions):
            shape = tuple(log_probs.shape) if isinstance(log_probs, th.Tensor) else type(log_probs).__name__
            raise ValueError(
                f"`reference_policy` must return log-probabilities as a tensor of shape [batch, {self.n_actions}] = "
                f"[{batch_size}, {self.n_actions}] for a batch of {batch_size} observations, got {shape}"
            )
        total = th.logsumexp(log_probs, dim=-1)
        # One check, so one synchronisation with the device per call (NaN compares False: it is caught too)
        if not bool((total.abs() <= NORMALISATION_TOLERANCE).all()):
            raise ValueError(
                "`reference_policy` must return finite, normalised log-probabilities (logsumexp over actions = 0), "
                f"got logsumexp up to {float(total.abs().max()):.3g}"
            )
        return log_probs


class _PolicyLogPrior:
    """The action log-probabilities of an SB3 policy (a picklable function of the observations)."""

    def __init__(self, policy: BasePolicy) -> None:
        self.policy = policy

    def __call__(self, obs: PyTorchObs) -> th.Tensor:
        if hasattr(self.policy, "action_log_probs"):  # a soft Q policy: its Boltzmann policy
            return self.policy.action_log_probs(obs)  # type: ignore[operator]
        # e.g. PPO / A2C: the normalised logits of the categorical distribution
        return self.policy.get_distribution(obs).distribution.logits  # type: ignore[operator]


def _batch_size(obs: PyTorchObs) -> int:
    if isinstance(obs, dict):
        return len(next(iter(obs.values())))
    return len(obs)


def sample_observations(observation_space: spaces.Space, batch_size: int, device: th.device | str) -> PyTorchObs:
    """
    A batch of observations sampled from ``observation_space`` (with its own generator: the space's is left alone), as
    tensors on ``device``, in the form the model hands to the prior (before SB3's preprocessing).

    :param observation_space: the env's observation space
    :param batch_size: how many observations
    :param device: the model's device
    :return: a tensor ``[batch_size, *shape]``, or a dict of them for a ``Dict`` space
    """
    space = copy.deepcopy(observation_space)
    space.seed(0)
    samples = [space.sample() for _ in range(batch_size)]
    if isinstance(space, spaces.Dict):
        batch: np.ndarray | dict[str, np.ndarray] = {key: np.stack([sample[key] for sample in samples]) for key in space}
    else:
        batch = np.stack(samples)
    return obs_as_tensor(batch, th.device(device))


def check_policy_spaces(policy: BasePolicy, observation_space: spaces.Space, action_space: spaces.Space) -> None:
    """
    :param policy: an SB3 policy given as the prior
    :param observation_space: the env's observation space
    :param action_space: the env's action space
    :raises ValueError: naming ``reference_policy`` when the policy was built for other spaces
    """
    for name, expected, got in (
        ("observation", observation_space, policy.observation_space),
        ("action", action_space, policy.action_space),
    ):
        if got != expected:
            raise ValueError(
                f"`reference_policy` was built for another {name} space: {got}, while the env's is {expected}. "
                "The prior must be a policy for the same observations and actions"
            )


def check_log_prior_fn(
    log_prior_fn: LogPriorFn, observation_space: spaces.Space, n_actions: int, device: th.device | str
) -> None:
    """
    Evaluate a state-dependent prior once, on :data:`CHECK_BATCH_SIZE` observations sampled from the observation space
    on the model's device, so that a prior for another problem fails when it is given rather than deep inside training.

    :param log_prior_fn: the prior, ``obs -> log pibar(.|s)``
    :param observation_space: the env's observation space
    :param n_actions: size of the action space
    :param device: the model's device
    :raises ValueError: naming ``reference_policy`` and what was expected: the function fails on such observations, or
        returns something else than finite, normalised log-probabilities of shape ``[batch, n_actions]``
    """
    obs = sample_observations(observation_space, CHECK_BATCH_SIZE, device)
    try:
        with th.no_grad():
            log_probs = log_prior_fn(obs)
    except Exception as error:
        if isinstance(error, ValueError) and "reference_policy" in str(error):  # from the checks of _CheckedLogPrior
            raise
        raise ValueError(
            f"`reference_policy` failed on observations from the env's space {observation_space} "
            f"({type(error).__name__}: {error}); is it a prior for another observation space?"
        ) from error
    expected = (CHECK_BATCH_SIZE, n_actions)
    if not isinstance(log_probs, th.Tensor) or tuple(log_probs.shape) != expected:
        shape = tuple(log_probs.shape) if isinstance(log_probs, th.Tensor) else type(log_probs).__name__
        raise ValueError(
            f"`reference_policy` must return log-probabilities of shape [batch, n_actions] = [{expected[0]}, {n_actions}]"
            f" for a batch of {expected[0]} observations, got {shape}"
        )
    if not bool(th.isfinite(log_probs).all()):
        raise ValueError(
            "`reference_policy` must return finite log-probabilities (every action of positive probability), got "
            f"{log_probs.tolist()}"
        )
    total = th.logsumexp(log_probs.double(), dim=-1)
    if not bool((total.abs() <= NORMALISATION_TOLERANCE).all()):
        raise ValueError(
            "`reference_policy` must return normalised log-probabilities (logsumexp over actions = 0), got logsumexp "
            f"{total.tolist()}"
        )


def make_log_prior_fn(
    reference_policy: Any,
    n_actions: int,
    device: th.device,
    observation_space: spaces.Space | None = None,
    action_space: spaces.Space | None = None,
) -> LogPriorFn:
    """
    Turn a state-dependent reference policy into a function ``obs -> log pibar(.|s)`` of shape ``[batch, n_actions]``
    whose outputs are checked (shape, normalisation).

    Accepted: an SB3 model or policy with a categorical action distribution (``PPO``, ``A2C``, ``SoftQ``, ...), used as a
    frozen prior (e.g. a pretrained model for KL-regularised fine-tuning); or any callable taking the observation
    tensor(s) and returning log-probabilities.

    :param reference_policy: the prior
    :param n_actions: size of the action space
    :param device: device of the observations the function will receive
    :param observation_space: the env's observation space: when given, the prior is checked on observations sampled
        from it (:func:`check_log_prior_fn`), and an SB3 policy's spaces are compared with the env's
    :param action_space: the env's action space, compared with an SB3 policy's
    :return: the checked function
    """
    log_prior_fn = _make_log_prior_fn(reference_policy, n_actions, device, observation_space, action_space)
    if observation_space is not None:
        check_log_prior_fn(log_prior_fn, observation_space, n_actions, device)
    return log_prior_fn


def _make_log_prior_fn(
    reference_policy: Any,
    n_actions: int,
    device: th.device,
    observation_space: spaces.Space | None,
    action_space: spaces.Space | None,
) -> LogPriorFn:
    if isinstance(reference_policy, BaseAlgorithm):
        reference_policy = reference_policy.policy
    if isinstance(reference_policy, BasePolicy):
        if observation_space is not None and action_space is not None:
            check_policy_spaces(reference_policy, observation_space, action_space)
        # A frozen copy on the model's device: the user's policy is neither moved nor switched to evaluation mode
        if not hasattr(reference_policy, "action_log_probs") and not hasattr(reference_policy, "get_distribution"):
            raise TypeError(
                f"`reference_policy`: {type(reference_policy).__name__} has no action distribution (e.g. a DQN policy); "
                "pass a callable returning log-probabilities instead"
            )
        policy = copy.deepcopy(reference_policy).to(device)
        policy.set_training_mode(False)
        return _CheckedLogPrior(_PolicyLogPrior(policy), n_actions)
    if callable(reference_policy):
        return _CheckedLogPrior(reference_policy, n_actions)
    raise TypeError(
        "`reference_policy` must be None (uniform), a vector of probabilities, a callable returning log-probabilities, "
        f"or an SB3 policy / model; got {type(reference_policy).__name__}"
    )
