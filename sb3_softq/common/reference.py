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
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs

LogPriorFn = Callable[[PyTorchObs], th.Tensor]

#: Tolerance on :math:`|\\sum_a \\bar\\pi(a|s) - 1|`.
NORMALISATION_TOLERANCE = 1e-4


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
        if not isinstance(log_probs, th.Tensor) or log_probs.dim() != 2 or log_probs.shape[-1] != self.n_actions:
            shape = tuple(log_probs.shape) if isinstance(log_probs, th.Tensor) else type(log_probs).__name__
            raise ValueError(
                f"`reference_policy` must return log-probabilities as a tensor of shape [batch, {self.n_actions}], "
                f"got {shape}"
            )
        total = th.logsumexp(log_probs, dim=-1)
        # One check, so one synchronisation with the device per call (NaN compares False: it is caught too)
        if not bool((total.abs() <= NORMALISATION_TOLERANCE).all()):
            raise ValueError(
                "`reference_policy` must return normalised log-probabilities (logsumexp over actions = 0), "
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


def make_log_prior_fn(reference_policy: Any, n_actions: int, device: th.device) -> LogPriorFn:
    """
    Turn a state-dependent reference policy into a function ``obs -> log pibar(.|s)`` of shape ``[batch, n_actions]``
    whose outputs are checked (shape, normalisation).

    Accepted: an SB3 model or policy with a categorical action distribution (``PPO``, ``A2C``, ``SoftQ``, ...), used as a
    frozen prior (e.g. a pretrained model for KL-regularised fine-tuning); or any callable taking the observation
    tensor(s) and returning log-probabilities.

    :param reference_policy: the prior
    :param n_actions: size of the action space
    :param device: device of the observations the function will receive
    :return: the checked function
    """
    if isinstance(reference_policy, BaseAlgorithm):
        reference_policy = reference_policy.policy
    if isinstance(reference_policy, BasePolicy):
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
