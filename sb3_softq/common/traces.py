"""
The trace coefficients of Soft Q(λ): one registry of their names, their rules and which need behaviour probabilities.

Every multi-step variant is the same recursion with a different trace coefficient :math:`c_k` (paper §3):

=========================  ============================================================  ====================
``trace``                  :math:`c_k`                                                   needs :math:`\\mu`
=========================  ============================================================  ====================
``"tree_backup"``          :math:`\\lambda\\,\\pi_B(a_k|s_k)`                               no
``"boltzmann"``            :math:`\\lambda`                                               no
``"importance_sampling"``  :math:`\\lambda\\,\\pi_B(a_k|s_k) / \\mu(a_k|s_k)`                yes
``"retrace"``              :math:`\\lambda\\,\\min(1, \\pi_B(a_k|s_k) / \\mu(a_k|s_k))`       yes
=========================  ============================================================  ====================

The deep-RL returns (:mod:`sb3_softq.common.returns`), the tabular learners (:mod:`sb3_softq.tabular`), the
algorithms and the Optuna samplers all take their names and rules from here.
"""

from typing import TYPE_CHECKING, Literal, TypeVar

import numpy as np

if TYPE_CHECKING:  # PyTorch is not imported at run time: the NumPy-only tabular package uses this registry too
    import torch as th

TraceName = Literal["tree_backup", "boltzmann", "importance_sampling", "retrace"]

#: Every trace, the default first.
TRACES: tuple[str, ...] = ("tree_backup", "boltzmann", "importance_sampling", "retrace")

#: Traces built from a ratio :math:`\\pi_B / \\mu` and therefore needing the behaviour probabilities :math:`\\mu`.
TRACES_NEEDING_BEHAVIOUR_PROBS: tuple[str, ...] = ("importance_sampling", "retrace")

#: The one trace whose coefficient does not depend on :math:`\\pi_B` (callers can skip computing the policy).
CONSTANT_TRACE = "boltzmann"

#: The one trace that clips its ratio, :math:`\\min(1, \\pi_B / \\mu)`.
CLIPPED_TRACE = "retrace"

ArrayT = TypeVar("ArrayT", float, np.ndarray, "th.Tensor")


def check_trace(trace: object, allowed: tuple[str, ...] = TRACES, name: str = "trace") -> str:
    """
    :param trace: the value given for ``name``
    :param allowed: the traces the caller supports (all of :data:`TRACES` by default)
    :param name: the parameter's name, for the error message
    :return: ``trace``, checked to be one of ``allowed``
    :raises ValueError: naming ``name`` and the allowed values otherwise
    """
    if not isinstance(trace, str) or trace not in allowed:
        raise ValueError(f"Unknown `{name}` {trace!r}: allowed values are {', '.join(map(repr, allowed))}")
    return trace


def needs_behaviour_probs(trace: str) -> bool:
    """:return: whether the coefficients of ``trace`` are built from :math:`\\pi_B / \\mu`."""
    return check_trace(trace) in TRACES_NEEDING_BEHAVIOUR_PROBS


def trace_coefficients(trace: str, trace_lambda: float, target_probs: ArrayT, behaviour_probs: ArrayT | None = None) -> ArrayT:
    """
    The trace coefficient :math:`c` of each step from the target policy's probability of the taken action
    (the table of this module), for Python floats, NumPy arrays and PyTorch tensors alike (same type in, same type
    out): :math:`\\lambda`, :math:`\\lambda\\,\\pi_B`, :math:`(\\lambda\\,\\pi_B) / \\mu` or
    :math:`\\lambda \\min(1, \\pi_B / \\mu)`.

    :param trace: one of :data:`TRACES`
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`
    :param target_probs: :math:`\\pi_B(a_k|s_k)`, any shape (ignored by :data:`CONSTANT_TRACE` but for its shape)
    :param behaviour_probs: :math:`\\mu(a_k|s_k)`, the shape of ``target_probs``; required where
        :func:`needs_behaviour_probs`, ignored otherwise
    :return: :math:`c_k`, the shape and type of ``target_probs``
    """
    check_trace(trace)
    if trace == CONSTANT_TRACE:
        if isinstance(target_probs, np.ndarray):
            return np.full_like(target_probs, float(trace_lambda))
        if isinstance(target_probs, float):
            return float(trace_lambda)
        return target_probs.new_full(target_probs.shape, float(trace_lambda))
    if trace not in TRACES_NEEDING_BEHAVIOUR_PROBS:  # tree backup
        return trace_lambda * target_probs
    if behaviour_probs is None:
        raise ValueError(
            f"trace={trace!r} needs `behaviour_probs`, the behaviour probabilities mu of the taken actions; "
            "use trace='tree_backup' or 'boltzmann' when they were not stored"
        )
    if trace == CLIPPED_TRACE:
        ratios = target_probs / behaviour_probs
        if isinstance(ratios, float):
            return trace_lambda * min(ratios, 1.0)  # type: ignore[return-value]  # a float for a float
        return trace_lambda * ratios.clip(max=1.0)
    return trace_lambda * target_probs / behaviour_probs  # importance sampling
