"""
Forward views of the multi-step soft returns on one recorded episode, for a fixed table :math:`Q`.

An episode is given as ``observations`` :math:`s_0, \\dots, s_T` (``T + 1`` entries: the last one is the final
observation), ``actions`` :math:`a_0, \\dots, a_{T-1}`, ``rewards`` :math:`r_0, \\dots, r_{T-1}` and whether its last
step terminated (no bootstrap) or was truncated / is still running (bootstrap with :math:`V(s_T)`).

TD-error form (paper eq. 23, 36, 46; SPEC §3), with one-step soft TD errors
:math:`\\delta_k = r_k + \\gamma (1 - \\text{terminated}_k) V(s_{k+1}) - Q(s_k, a_k)`:

.. math::

    G_t - Q(s_t, a_t) = \\sum_{k=t}^{t+n-1} \\Big(\\prod_{i=t+1}^{k} \\gamma c_i\\Big) \\delta_k

where the trace coefficient :math:`c_i` selects the algorithm: :math:`\\lambda` (Boltzmann), :math:`\\lambda\\,\\pi_B(a_i|s_i)`
(tree backup) or :math:`\\lambda\\,\\pi_B(a_i|s_i)/\\mu(a_i|s_i)` (per-decision importance sampling).
"""

import numpy as np
from numpy.typing import ArrayLike

from sb3_softq.common.checks import check_number
from sb3_softq.common.traces import CONSTANT_TRACE
from sb3_softq.tabular.soft import FloatArray, boltzmann_log_probs, reference_log_prior, soft_value
from sb3_softq.tabular.traces import TRACES, check_choice, needs_behaviour_probs, trace_coefficient


def _episode(
    q_table: ArrayLike, observations: ArrayLike, actions: ArrayLike, rewards: ArrayLike, log_prior: ArrayLike | None
) -> tuple[FloatArray, np.ndarray, np.ndarray, FloatArray, FloatArray]:
    q = np.asarray(q_table, dtype=np.float64)
    obs = np.asarray(observations, dtype=np.int64)
    act = np.asarray(actions, dtype=np.int64)
    rew = np.asarray(rewards, dtype=np.float64)
    if act.ndim != 1 or obs.shape != (act.shape[0] + 1,) or rew.shape != act.shape:
        raise ValueError(
            f"an episode of T steps needs T + 1 observations, T actions and T rewards, got shapes "
            f"{obs.shape}, {act.shape} and {rew.shape}"
        )
    for name, indices, size in (("observations", obs, q.shape[0]), ("actions", act, q.shape[1])):
        if indices.size and not (0 <= indices.min() and indices.max() < size):
            raise ValueError(f"`{name}` must be indices in [0, {size}) of `q_table` {q.shape}, got {indices}")
    prior = reference_log_prior(None, *q.shape) if log_prior is None else np.asarray(log_prior, dtype=np.float64)
    return q, obs, act, rew, np.broadcast_to(prior, q.shape)


def soft_td_errors(
    q_table: ArrayLike,
    observations: ArrayLike,
    actions: ArrayLike,
    rewards: ArrayLike,
    terminated: bool,
    gamma: float,
    ent_coef: float,
    log_prior: ArrayLike | None = None,
) -> FloatArray:
    """
    One-step soft TD errors (paper eq. 11, 21): :math:`\\delta_k = r_k + \\gamma (1 - \\text{terminated}_k) V(s_{k+1})
    - Q(s_k, a_k)`, with :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)`.

    For :math:`k > t` this is the paper's KL-augmented TD error (eq. 13, 22) of the on-policy n-step return, because
    :math:`V(s_k) - Q(s_k, a_k) = -\\tau \\log(\\pi_B(a_k|s_k)/\\bar\\pi(a_k|s_k))`.

    :param q_table: :math:`Q`, ``[n_states, n_actions]``
    :param observations: :math:`s_0..s_T`, ``[T + 1]``
    :param actions: :math:`a_0..a_{T-1}`, ``[T]``
    :param rewards: :math:`r_0..r_{T-1}`, ``[T]``
    :param terminated: whether step ``T - 1`` terminated the episode
    :param gamma: discount
    :param ent_coef: temperature :math:`\\tau`
    :param log_prior: :math:`\\log\\bar\\pi`, ``[n_states, n_actions]`` or ``[n_actions]``; ``None`` for uniform
    :return: :math:`\\delta_0..\\delta_{T-1}`, ``[T]``
    """
    check_number("gamma", gamma, 0, 1)
    q, obs, act, rew, prior = _episode(q_table, observations, actions, rewards, log_prior)
    next_values = soft_value(q[obs[1:]], ent_coef, prior[obs[1:]])
    if terminated and len(next_values) > 0:
        next_values[-1] = 0.0
    return rew + gamma * next_values - q[obs[:-1], act]


def trace_coefficients(
    q_table: ArrayLike,
    observations: ArrayLike,
    actions: ArrayLike,
    ent_coef: float,
    trace: str = "tree_backup",
    trace_lambda: float = 1.0,
    log_prior: ArrayLike | None = None,
    behaviour_probs: ArrayLike | None = None,
) -> FloatArray:
    """
    Trace coefficients :math:`c_k` of each step: :math:`\\lambda` (``"boltzmann"``, eq. 16, 44),
    :math:`\\lambda\\,\\pi_B(a_k|s_k)` (``"tree_backup"``, eq. 17, 46) or :math:`\\lambda\\,\\pi_B(a_k|s_k)/\\mu_k`
    (``"importance_sampling"``, per-decision, eq. 25-27).

    :param q_table: :math:`Q`, ``[n_states, n_actions]``
    :param observations: :math:`s_0..s_T`, ``[T + 1]`` (or ``[T]``)
    :param actions: :math:`a_0..a_{T-1}`, ``[T]``
    :param ent_coef: temperature :math:`\\tau`
    :param trace: ``"boltzmann"``, ``"tree_backup"`` or ``"importance_sampling"``
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`
    :param log_prior: :math:`\\log\\bar\\pi`; ``None`` for uniform
    :param behaviour_probs: :math:`\\mu_k = \\mu(a_k|s_k)`, ``[T]``, needed by ``"importance_sampling"``
    :return: :math:`c_0..c_{T-1}`, ``[T]`` (:math:`c_0` is never used by a return starting at 0)
    """
    check_number("trace_lambda", trace_lambda, 0, 1)
    act = np.asarray(actions, dtype=np.int64)
    if act.ndim != 1:
        raise ValueError(f"`actions` must have shape [T], got {act.shape}")
    obs = np.asarray(observations, dtype=np.int64)[: act.shape[0]]
    q = np.asarray(q_table, dtype=np.float64)
    check_choice("trace", trace, TRACES)
    if trace == CONSTANT_TRACE:
        return trace_coefficient(trace, trace_lambda, np.ones(act.shape))
    prior = None if log_prior is None else np.broadcast_to(np.asarray(log_prior, dtype=np.float64), q.shape)[obs]
    target_probs = np.exp(boltzmann_log_probs(q[obs], ent_coef, prior)[np.arange(act.shape[0]), act])
    mu = None
    if needs_behaviour_probs(trace) and behaviour_probs is not None:
        mu = np.asarray(behaviour_probs, dtype=np.float64)
        if mu.shape != act.shape or not bool(np.all((mu > 0) & (mu <= 1))):
            raise ValueError(
                f"`behaviour_probs` must hold mu(a_k|s_k) in (0, 1] for each of the {act.shape[0]} actions, got {mu!r}"
            )
    return trace_coefficient(trace, trace_lambda, target_probs, mu)


def multistep_soft_returns(
    q_table: ArrayLike,
    observations: ArrayLike,
    actions: ArrayLike,
    rewards: ArrayLike,
    terminated: bool,
    gamma: float,
    ent_coef: float,
    trace: str = "tree_backup",
    trace_lambda: float = 1.0,
    n: int | None = None,
    log_prior: ArrayLike | None = None,
    behaviour_probs: ArrayLike | None = None,
) -> FloatArray:
    """
    Multi-step soft returns of every step of an episode in TD-error form (paper eq. 23, 27, 36, 46):

    .. math::

        G_t = Q(s_t, a_t) + \\sum_{k=t}^{\\min(t+n, T)-1} \\Big(\\prod_{i=t+1}^{k} \\gamma c_i\\Big) \\delta_k

    With ``n=None`` the sum runs to the end of the episode: the λ-return (eq. 40, 45) when :math:`c` contains
    :math:`\\lambda < 1`. With :math:`\\lambda = 1` and a window ``n`` it is the n-step return: on-policy Boltzmann
    (eq. 18), per-decision importance sampling or Soft Tree Backup (eq. 30).

    :param q_table: :math:`Q`, ``[n_states, n_actions]``
    :param observations: :math:`s_0..s_T`, ``[T + 1]``
    :param actions: :math:`a_0..a_{T-1}`, ``[T]``
    :param rewards: :math:`r_0..r_{T-1}`, ``[T]``
    :param terminated: whether step ``T - 1`` terminated the episode
    :param gamma: discount
    :param ent_coef: temperature :math:`\\tau`
    :param trace: ``"boltzmann"``, ``"tree_backup"`` or ``"importance_sampling"``
    :param trace_lambda: :math:`\\lambda`
    :param n: window length (>= 1), or ``None`` for the whole remaining episode
    :param log_prior: :math:`\\log\\bar\\pi`; ``None`` for uniform
    :param behaviour_probs: :math:`\\mu(a_k|s_k)`, ``[T]``, for ``"importance_sampling"``
    :return: :math:`G_0..G_{T-1}`, ``[T]``
    """
    q, obs, act, _, _ = _episode(q_table, observations, actions, rewards, log_prior)
    deltas = soft_td_errors(q, obs, act, rewards, terminated, gamma, ent_coef, log_prior)
    discounted_coefs = gamma * trace_coefficients(q, obs, act, ent_coef, trace, trace_lambda, log_prior, behaviour_probs)
    horizon = act.shape[0]
    window = horizon if n is None else check_number("n", n, 1, integer=True)
    returns = q[obs[:-1], act].copy()
    for t in range(horizon):
        end = min(t + window, horizon)
        weights = np.cumprod(np.concatenate(([1.0], discounted_coefs[t + 1 : end])))  # products, never divided
        returns[t] += weights @ deltas[t:end]
    return returns


def n_step_soft_return(
    q_table: ArrayLike,
    observations: ArrayLike,
    actions: ArrayLike,
    rewards: ArrayLike,
    terminated: bool,
    gamma: float,
    ent_coef: float,
    n: int,
    trace: str = "tree_backup",
    log_prior: ArrayLike | None = None,
) -> FloatArray:
    """
    n-step soft returns in the paper's direct form (no TD errors), for every step of an episode.

    - ``"boltzmann"`` (eq. 18, 24): :math:`G_{t:t+n} = r_t + \\sum_{k=t+1}^{t+n-1} \\gamma^{k-t}
      \\big(r_k - \\tau \\log\\frac{\\pi_B(a_k|s_k)}{\\bar\\pi(a_k|s_k)}\\big) + \\gamma^n V(s_{t+n})`
    - ``"tree_backup"`` (eq. 30-31): :math:`G_{k:t+n} = r_k + \\gamma \\Big[\\sum_{a \\ne a_{k+1}} \\pi_B(a|s_{k+1})
      Q(s_{k+1}, a) - \\tau\\,\\mathrm{KL}(\\pi_B \\| \\bar\\pi)(s_{k+1}) + \\pi_B(a_{k+1}|s_{k+1}) G_{k+1:t+n}\\Big]`,
      ending with :math:`G_{t+n-1:t+n} = r_{t+n-1} + \\gamma V(s_{t+n})`

    The window is cut at the end of the episode; the last term is dropped when the episode terminated there.

    :param n: number of steps (>= 1)
    :param trace: ``"boltzmann"`` or ``"tree_backup"``
    :return: :math:`G_{t:t+n}` for :math:`t = 0..T-1`, ``[T]``

    (Other parameters as :func:`multistep_soft_returns`.)
    """
    check_number("gamma", gamma, 0, 1)
    q, obs, act, rew, prior = _episode(q_table, observations, actions, rewards, log_prior)
    n = check_number("n", n, 1, integer=True)
    check_choice("trace (of the direct form)", trace, tuple(t for t in TRACES if not needs_behaviour_probs(t)))
    horizon = act.shape[0]
    values = soft_value(q[obs], ent_coef, prior[obs])  # V(s_0..s_T)
    log_probs = boltzmann_log_probs(q[obs], ent_coef, prior[obs])  # log pi_B(.|s_0..s_T)
    returns = np.zeros(horizon)
    for t in range(horizon):
        end = min(t + n, horizon)
        tail = 0.0 if (terminated and end == horizon) else values[end]
        if trace == "boltzmann":
            kl_rewards = [rew[k] - ent_coef * (log_probs[k, act[k]] - prior[obs[k], act[k]]) for k in range(t + 1, end)]
            discounts = gamma ** np.arange(1, end - t)
            returns[t] = rew[t] + float(discounts @ np.asarray(kl_rewards)) + gamma ** (end - t) * tail
        else:
            g = rew[end - 1] + gamma * tail
            for k in range(end - 2, t - 1, -1):
                probs = np.exp(log_probs[k + 1])
                others = np.arange(q.shape[1]) != act[k + 1]
                kl = float(probs @ (log_probs[k + 1] - prior[obs[k + 1]]))
                leaves = float(probs[others] @ q[obs[k + 1], others])
                g = rew[k] + gamma * (leaves - ent_coef * kl + probs[act[k + 1]] * g)
            returns[t] = g
    return returns
