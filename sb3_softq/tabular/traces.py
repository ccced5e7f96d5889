"""
The traces of the tabular algorithms: which of the Soft Q(λ) traces they implement, and the coefficient rule.

The names and the coefficient rule come from the registry of every trace, :mod:`sb3_softq.common.traces` (which
imports no PyTorch); this module says which of them the tabular algorithms implement:

=========================  ==================================================  ====================
``trace``                  :math:`c_k`                                         needs :math:`\\mu`
=========================  ==================================================  ====================
``"tree_backup"``          :math:`\\lambda\\,\\pi_B(a_k|s_k)`                     no
``"boltzmann"``            :math:`\\lambda`                                     no
``"importance_sampling"``  :math:`\\lambda\\,\\pi_B(a_k|s_k) / \\mu(a_k|s_k)`      yes (``"n_step"`` only)
=========================  ==================================================  ====================

(the registry's clipped trace, Retrace, is not implemented by the tabular learner).
"""

from typing import TypeVar

import numpy as np

from sb3_softq.common import traces as registry

#: The traces the tabular forward views and learner implement, in the registry's order (the default first).
TRACES: tuple[str, ...] = tuple(trace for trace in registry.TRACES if trace != registry.CLIPPED_TRACE)

#: The traces among :data:`TRACES` whose coefficients are a ratio :math:`\\pi_B / \\mu`.
TRACES_NEEDING_BEHAVIOUR_PROBS: tuple[str, ...] = tuple(
    trace for trace in TRACES if trace in registry.TRACES_NEEDING_BEHAVIOUR_PROBS
)

__all__ = [
    "TRACES",
    "TRACES_NEEDING_BEHAVIOUR_PROBS",
    "check_choice",
    "needs_behaviour_probs",
    "trace_coefficient",
]

ValueT = TypeVar("ValueT", float, np.ndarray)


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """
    :param name: the parameter's name, for the error message
    :param value: the value given
    :param allowed: the allowed values
    :return: ``value``, checked to be one of ``allowed``
    :raises ValueError: naming ``name`` and the allowed values otherwise
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def needs_behaviour_probs(trace: str) -> bool:
    """:return: whether the coefficients of ``trace`` (one of :data:`TRACES`) are built from :math:`\\pi_B / \\mu`."""
    return check_choice("trace", trace, TRACES) in TRACES_NEEDING_BEHAVIOUR_PROBS


def trace_coefficient(trace: str, trace_lambda: float, target_probs: ValueT, behaviour_probs: ValueT | None = None) -> ValueT:
    """
    The trace coefficient :math:`c_k` from :math:`\\pi_B(a_k|s_k)`, for a float (the learner's per-step path) or a
    NumPy array (the forward views) alike: :func:`sb3_softq.common.traces.trace_coefficients` for the traces of
    :data:`TRACES`.

    :param trace: one of :data:`TRACES`
    :param trace_lambda: :math:`\\lambda`
    :param target_probs: :math:`\\pi_B(a_k|s_k)` (ignored by ``"boltzmann"``)
    :param behaviour_probs: :math:`\\mu(a_k|s_k)`, required where :func:`needs_behaviour_probs`
    :return: :math:`c_k`, a float for a float, an array of the shape of ``target_probs`` for an array
    """
    check_choice("trace", trace, TRACES)
    return registry.trace_coefficients(trace, trace_lambda, target_probs, behaviour_probs)
