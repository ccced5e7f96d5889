"""
The soft (entropy-regularised) Bellman core in NumPy, on the last (action) axis.

Notation (Schulman et al. 2017; the Soft Q(λ) paper §2.2): temperature :math:`\\tau > 0` (``ent_coef``),
reference policy :math:`\\bar\\pi(a|s)` (``log_prior``, uniform when ``None``), discount :math:`\\gamma`.

- soft value :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)`
- Boltzmann policy :math:`\\pi_B(a|s) = \\bar\\pi(a|s) \\exp((Q(s,a) - V(s))/\\tau)
  = \\mathrm{softmax}(Q(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s))`
- soft Bellman optimality :math:`Q^*(s,a) = r(s,a) + \\gamma \\sum_{s'} P(s'|s,a) V^*(s')`
"""

import math
import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray

from sb3_softq.common.checks import check_number

FloatArray = NDArray[np.float64]


def _logits(q_values: FloatArray, ent_coef: float, log_prior: FloatArray | None) -> tuple[FloatArray, FloatArray]:
    """
    :math:`z = (Q - \\max_a Q)/\\tau + \\log\\bar\\pi` and :math:`\\max_a Q` (kept to undo the shift).
    """
    check_number("ent_coef", ent_coef, 0, low_open=True)
    q_max = q_values.max(axis=-1, keepdims=True)
    logits = (q_values - q_max) / ent_coef
    if log_prior is None:
        logits = logits - np.log(q_values.shape[-1])
    else:
        logits = logits + log_prior
    return logits, q_max


def _logsumexp(logits: FloatArray) -> FloatArray:
    """Stable :math:`\\log \\sum_a \\exp z_a` over the last axis, keeping it (``[..., 1]``)."""
    z_max = logits.max(axis=-1, keepdims=True)
    return z_max + np.log(np.exp(logits - z_max).sum(axis=-1, keepdims=True))


def soft_value(q_values: ArrayLike, ent_coef: float, log_prior: ArrayLike | None = None) -> FloatArray:
    """
    Soft state value :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)`.

    Computed as :math:`\\max_a Q + \\tau\\,\\mathrm{logsumexp}((Q - \\max_a Q)/\\tau + \\log\\bar\\pi)`, exact and free of
    overflow; it tends to :math:`\\max_a Q` as :math:`\\tau \\to 0` (for a prior with full support).

    :param q_values: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q_values``; ``None`` for uniform
    :return: soft values ``[...]``
    """
    q = np.asarray(q_values, dtype=np.float64)
    prior = None if log_prior is None else np.asarray(log_prior, dtype=np.float64)
    logits, q_max = _logits(q, ent_coef, prior)
    return (q_max + ent_coef * _logsumexp(logits))[..., 0]


def soft_value_and_log_probs_row(q_row: list[float], ent_coef: float, log_prior_row: list[float]) -> tuple[float, list[float]]:
    """
    :func:`soft_value` and :func:`boltzmann_log_probs` of one state in plain Python floats, the same shifted
    log-sum-exp term by term: the learner's per-step path, where a row holds a few actions and NumPy's per-call cost
    would dominate. The tests compare it with the vectorised functions.

    :param q_row: :math:`Q(s, \\cdot)`, ``n_actions`` floats
    :param ent_coef: temperature :math:`\\tau > 0` (not checked here: the caller checked it once)
    :param log_prior_row: :math:`\\log\\bar\\pi(\\cdot|s)`, ``n_actions`` floats
    :return: :math:`V(s)` and :math:`\\log\\pi_B(\\cdot|s)`
    """
    q_max = max(q_row)
    logits = [(q - q_max) / ent_coef + lp for q, lp in zip(q_row, log_prior_row, strict=True)]
    z_max = max(logits)
    log_normaliser = z_max + math.log(sum(math.exp(z - z_max) for z in logits))
    return q_max + ent_coef * log_normaliser, [z - log_normaliser for z in logits]


def boltzmann_log_probs(q_values: ArrayLike, ent_coef: float, log_prior: ArrayLike | None = None) -> FloatArray:
    """
    Log-probabilities of the Boltzmann policy :math:`\\log\\pi_B(a|s) = \\log\\bar\\pi(a|s) + (Q(s,a) - V(s))/\\tau`.

    :param q_values: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q_values``; ``None`` for uniform
    :return: log-probabilities ``[..., n_actions]``
    """
    q = np.asarray(q_values, dtype=np.float64)
    prior = None if log_prior is None else np.asarray(log_prior, dtype=np.float64)
    logits, _ = _logits(q, ent_coef, prior)
    return logits - _logsumexp(logits)


def boltzmann_probs(q_values: ArrayLike, ent_coef: float, log_prior: ArrayLike | None = None) -> FloatArray:
    """
    Boltzmann policy :math:`\\pi_B(\\cdot|s) = \\mathrm{softmax}(Q(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s))`.

    :param q_values: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q_values``; ``None`` for uniform
    :return: probabilities ``[..., n_actions]``
    """
    return np.exp(boltzmann_log_probs(q_values, ent_coef, log_prior))


def reference_log_prior(reference_policy: ArrayLike | None, n_states: int, n_actions: int) -> FloatArray:
    """
    Validate a reference policy :math:`\\bar\\pi` and return :math:`\\log\\bar\\pi` as a table ``[n_states, n_actions]``.

    :param reference_policy: ``None`` (uniform), a probability vector ``[n_actions]`` (the same in every state) or a
        table ``[n_states, n_actions]`` whose rows are probability vectors; every probability must be positive
    :param n_states: number of states
    :param n_actions: number of actions
    :return: :math:`\\log\\bar\\pi(a|s)`, ``[n_states, n_actions]``
    """
    if reference_policy is None:
        return np.full((n_states, n_actions), -np.log(n_actions))
    prior = np.asarray(reference_policy, dtype=np.float64)
    if prior.shape not in ((n_actions,), (n_states, n_actions)):
        raise ValueError(
            f"reference_policy must be None, a vector of shape ({n_actions},) or a table of shape ({n_states}, {n_actions}), "
            f"got shape {prior.shape}"
        )
    if not np.all(np.isfinite(prior)) or np.any(prior <= 0.0):
        raise ValueError("reference_policy must hold strictly positive, finite probabilities")
    if not np.allclose(prior.sum(axis=-1), 1.0, atol=1e-6):
        raise ValueError(f"reference_policy probabilities must sum to 1 over actions, got sums {prior.sum(axis=-1)}")
    return np.broadcast_to(np.log(prior / prior.sum(axis=-1, keepdims=True)), (n_states, n_actions)).copy()


def soft_value_iteration(
    transitions: ArrayLike,
    rewards: ArrayLike,
    gamma: float,
    ent_coef: float,
    reference_policy: ArrayLike | None = None,
    tol: float = 1e-10,
    max_iterations: int = 100_000,
) -> FloatArray:
    """
    Soft value iteration: iterate the soft Bellman optimality operator to its fixed point :math:`Q^*`,

    .. math::

        Q_{i+1}(s,a) = r(s,a) + \\gamma \\sum_{s'} P(s'|s,a)\\, \\tau \\log \\sum_{a'} \\bar\\pi(a'|s')
        \\exp(Q_i(s',a')/\\tau),

    starting from :math:`Q_0 = 0`, until :math:`\\max |Q_{i+1} - Q_i| <` ``tol`` (a :math:`\\gamma`-contraction, so the
    error is then below ``tol`` :math:`\\gamma/(1-\\gamma)`). Terminal states must be modelled by the caller as absorbing
    states with zero reward (their value is then 0).

    :param transitions: :math:`P(s'|s,a)`, ``[n_states, n_actions, n_states]``, rows summing to 1
    :param rewards: expected rewards :math:`r(s,a)`, ``[n_states, n_actions]``
    :param gamma: discount :math:`\\gamma \\in [0, 1]` (with :math:`\\gamma = 1` every policy must reach an absorbing state)
    :param ent_coef: temperature :math:`\\tau > 0`
    :param reference_policy: :math:`\\bar\\pi`: ``None`` (uniform), ``[n_actions]`` or ``[n_states, n_actions]``
    :param tol: stopping threshold on the sup-norm change between iterations
    :param max_iterations: iteration budget (a ``RuntimeWarning`` is emitted when it is exhausted)
    :return: :math:`Q^*`, ``[n_states, n_actions]``
    """
    p = np.asarray(transitions, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if p.ndim != 3 or p.shape[0] != p.shape[2]:
        raise ValueError(f"transitions must have shape [n_states, n_actions, n_states], got {p.shape}")
    if r.shape != p.shape[:2]:
        raise ValueError(f"rewards must have shape {p.shape[:2]} (= [n_states, n_actions]), got {r.shape}")
    if np.any(p < 0.0) or not np.allclose(p.sum(axis=-1), 1.0, atol=1e-8):
        raise ValueError("transitions must hold probabilities P(s'|s,a) >= 0 summing to 1 over s'")
    check_number("gamma", gamma, 0, 1)
    check_number("ent_coef", ent_coef, 0, low_open=True)
    log_prior = reference_log_prior(reference_policy, p.shape[0], p.shape[1])
    q = np.zeros_like(r)
    for _ in range(max_iterations):
        q_next = r + gamma * (p @ soft_value(q, ent_coef, log_prior))
        converged = np.max(np.abs(q_next - q)) < tol
        q = q_next
        if converged:
            return q
    warnings.warn(f"soft_value_iteration did not reach tol={tol} in {max_iterations} iterations", RuntimeWarning)
    return q
