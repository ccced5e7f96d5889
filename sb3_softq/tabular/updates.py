"""
The update rules of the three tabular algorithms, on one transition at a time (paper appendices 1-2).

With :math:`V` and :math:`\\pi_B` read from the table TD errors are computed from (``soft_row``) and the one-step
soft TD error :math:`\\delta_t = r_t + \\gamma (1 - \\text{terminated}_t) V(s_{t+1}) - Q(s_t, a_t)` (eq. 11):

- one-step (eq. 10): :func:`one_step_update`;
- n-step (eq. 23, 27, 36): :func:`n_step_update` of the oldest pair of a window of transitions;
- eligibility traces (backward view, eq. 43-48): :func:`eligibility_trace_update`.
"""

import math
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from sb3_softq.common.traces import CONSTANT_TRACE
from sb3_softq.tabular.soft import FloatArray
from sb3_softq.tabular.traces import trace_coefficient

#: ``obs -> (V(s), log pi_B(.|s))`` under the table TD errors are computed from
SoftRow = Callable[[int], tuple[float, list[float]]]


class Transition(NamedTuple):
    """One step :math:`(s_t, a_t, r_t, s_{t+1})` of an episode, with :math:`\\mu(a_t|s_t)`."""

    obs: int
    action: int
    reward: float
    next_obs: int
    terminated: bool
    behaviour_prob: float


def soft_td_error(transition: Transition, q_read: FloatArray, gamma: float, soft_row: SoftRow) -> float:
    """
    :math:`\\delta_t = r_t + \\gamma (1 - \\text{terminated}_t) V(s_{t+1}) - Q(s_t, a_t)` (eq. 11).

    :param transition: the step
    :param q_read: :math:`Q`, ``[n_states, n_actions]``
    :param gamma: discount
    :param soft_row: :math:`V` and :math:`\\log\\pi_B` of a state, from ``q_read``
    :return: :math:`\\delta_t`
    """
    next_value = 0.0 if transition.terminated else soft_row(transition.next_obs)[0]
    return transition.reward + gamma * next_value - float(q_read[transition.obs, transition.action])


def _target_prob(trace: str, transition: Transition, soft_row: SoftRow) -> float:
    """:math:`\\pi_B(a_t|s_t)`, left out (1.0) where the coefficient of ``trace`` does not use it."""
    return 1.0 if trace == CONSTANT_TRACE else math.exp(soft_row(transition.obs)[1][transition.action])


def one_step_update(q_table: FloatArray, transition: Transition, td_error: float, alpha: float) -> None:
    """
    One-step soft Q-learning (eq. 10), in place: :math:`Q(s_t, a_t) \\leftarrow Q(s_t, a_t) + \\alpha \\delta_t`.
    """
    q_table[transition.obs, transition.action] += alpha * td_error


def eligibility_trace_update(
    q_table: FloatArray,
    traces: FloatArray,
    transition: Transition,
    td_error: float,
    alpha: float,
    gamma: float,
    trace_lambda: float,
    trace: str,
    replacing: bool,
    soft_row: SoftRow,
) -> None:
    """
    Backward view (eq. 43-44, 46-48), in place: :math:`e \\leftarrow \\gamma\\lambda \\rho_t e`;
    :math:`e(s_t,a_t) \\mathrel{+}= 1` (accumulating) or :math:`= 1` (replacing); :math:`Q \\leftarrow Q + \\alpha\\delta_t e`,
    with :math:`\\rho_t` the trace coefficient of ``trace`` at :math:`\\lambda = 1` (1 for Boltzmann traces,
    :math:`\\pi_B(a_t|s_t)` for tree backup).
    """
    coef = trace_coefficient(trace, 1.0, _target_prob(trace, transition, soft_row))
    traces *= gamma * trace_lambda * coef
    if replacing:
        traces[transition.obs, transition.action] = 1.0
    else:
        traces[transition.obs, transition.action] += 1.0
    q_table += alpha * td_error * traces


def n_step_update(
    q_table: FloatArray,
    q_read: FloatArray,
    window: deque[Transition],
    alpha: float,
    gamma: float,
    trace_lambda: float,
    trace: str,
    soft_row: SoftRow,
) -> None:
    """
    Update the oldest pair of ``window`` and drop it (eq. 23, 27, 36), in place:
    :math:`Q(s_t,a_t) \\mathrel{+}= \\alpha \\sum_k (\\prod_{i=t+1}^{k} \\gamma c_i) \\delta_k`, with TD errors and
    coefficients :math:`c_i` (:func:`~sb3_softq.tabular.traces.trace_coefficient`) from ``q_read`` / ``soft_row``.
    """
    first = window[0]
    correction, weight = 0.0, 1.0
    for k, step in enumerate(window):
        if k > 0:
            weight *= gamma * trace_coefficient(trace, trace_lambda, _target_prob(trace, step, soft_row), step.behaviour_prob)
        correction += weight * soft_td_error(step, q_read, gamma, soft_row)
    q_table[first.obs, first.action] += alpha * correction
    window.popleft()
