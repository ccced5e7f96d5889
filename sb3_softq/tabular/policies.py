"""
The behaviour policies :math:`\\mu` of the tabular learner and categorical sampling by inverse CDF.

The target policy is the Boltzmann policy of the table (:func:`~sb3_softq.tabular.soft.boltzmann_probs`); the
behaviour policy, with which ``learn`` chooses actions, is that policy (``None``), ``"uniform"``, ε-greedy with
respect to :math:`Q` (a float ε) or a callable ``(obs, q_table) -> probabilities``.
"""

import math

import numpy as np
from numpy.typing import NDArray

from sb3_softq.tabular.options import BehaviourPolicy
from sb3_softq.tabular.soft import FloatArray


def behaviour_probs_row(behaviour_policy: BehaviourPolicy, obs: int, q_table: FloatArray) -> list[float]:
    """
    :math:`\\mu(\\cdot|s)` of a behaviour policy other than the Boltzmann one (``None``, which the learner computes
    from its table and prior):

    - ``"uniform"``: :math:`1/|A|`;
    - a float :math:`\\epsilon`: :math:`(1 - \\epsilon)/|\\arg\\max_a Q(s,a)|` on each maximiser (ties shared) plus
      :math:`\\epsilon/|A|` on every action;
    - a callable: ``behaviour_policy(obs, q_table)``, checked to be a probability vector.

    :param behaviour_policy: the behaviour policy (validated by
        :func:`~sb3_softq.tabular.options.check_behaviour_policy`), not ``None``
    :param obs: the state :math:`s`
    :param q_table: :math:`Q`, ``[n_states, n_actions]``
    :return: :math:`\\mu(\\cdot|s)`, ``n_actions`` floats
    """
    n_actions = q_table.shape[1]
    if behaviour_policy is None:
        raise ValueError("behaviour_policy=None is the Boltzmann policy of the learner's table and prior")
    if isinstance(behaviour_policy, str):  # "uniform"
        return [1.0 / n_actions] * n_actions
    if callable(behaviour_policy):
        probs = np.asarray(behaviour_policy(obs, q_table), dtype=np.float64)
        if probs.shape != (n_actions,) or np.any(probs < 0) or not math.isclose(probs.sum(), 1.0, abs_tol=1e-6):
            raise ValueError(f"behaviour_policy(obs, q_table) must return {n_actions} probabilities summing to 1, got {probs}")
        return probs.tolist()
    epsilon = float(behaviour_policy)
    q_row = q_table[obs].tolist()
    greedy = [q == max(q_row) for q in q_row]
    share = (1.0 - epsilon) / sum(greedy)
    return [share * is_greedy + epsilon / n_actions for is_greedy in greedy]


def sample_action(probs: list[float], uniform: float) -> int:
    """
    One action drawn from ``probs`` by inverse CDF: the first :math:`a` with :math:`u \\sum_b p_b < \\sum_{b \\le a}
    p_b` (the loop twin of :func:`sample_actions`, for the learner's per-step path).

    :param probs: probabilities (up to rounding, their sum is used)
    :param uniform: a draw :math:`u` of :math:`U[0, 1)`
    :return: the action; never one of probability 0, even where rounding leaves :math:`u \\sum_b p_b` at the total
    """
    threshold = uniform * sum(probs)
    cumulative = 0.0
    for action, prob in enumerate(probs):
        cumulative += prob
        if threshold < cumulative:
            return action
    return max(action for action, prob in enumerate(probs) if prob > 0)


def sample_actions(probs: FloatArray, uniform: FloatArray) -> NDArray[np.int64]:
    """
    Actions drawn from each row of ``probs`` by inverse CDF, as :func:`sample_action` does for one row.

    :param probs: probabilities ``[..., n_actions]``
    :param uniform: draws of :math:`U[0, 1)`, ``[..., 1]``
    :return: the actions ``[...]``
    """
    cumulative = np.cumsum(probs, axis=-1)
    # Scaled to the total, which rounding leaves a little off 1
    draws = uniform * cumulative[..., -1:]
    return np.minimum((cumulative <= draws).sum(axis=-1), probs.shape[-1] - 1)
