"""
The traces of the tabular algorithms: which of the Soft Q(λ) traces they implement, and the coefficient rule.

The registry of every trace is :mod:`sb3_softq.common.traces`; it imports PyTorch, which this NumPy-only package
must not, so the subset implemented here and its coefficient rule are written once in this module and compared
with the registry by the tests (``tests/test_tabular_torch_crosscheck.py``). The tabular algorithms implement

=========================  ==================================================  ====================
``trace``                  :math:`c_k`                                         needs :math:`\\mu`
=========================  ==================================================  ====================
``"tree_backup"``          :math:`\\lambda\\,\\pi_B(a_k|s_k)`                     no
``"boltzmann"``            :math:`\\lambda`                                     no
``"importance_sampling"``  :math:`\\lambda\\,\\pi_B(a_k|s_k) / \\mu(a_k|s_k)`      yes (``"n_step"`` only)
=========================  ==================================================  ====================

(the registry's ``"retrace"`` is not implemented by the tabular learner).
"""

from typing import TypeVar

import numpy as np

#: The traces the tabular forward views and learner implement, in the registry's order (the default first).
TRACES: tuple[str, ...] = ("tree_backup", "boltzmann", "importance_sampling")

#: The traces among :data:`TRACES` whose coefficients are a ratio :math:`\\pi_B / \\mu`.
TRACES_NEEDING_BEHAVIOUR_PROBS: tuple[str, ...] = ("importance_sampling",)

#: The only trace whose coefficient does not depend on :math:`\\pi_B` (so that the Boltzmann policy need not be computed).
CONSTANT_TRACE = "boltzmann"

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
    NumPy array (the forward views) alike: :math:`\\lambda`, :math:`\\lambda\\,\\pi_B` or
    :math:`\\lambda\\,\\pi_B / \\mu`, computed as ``(trace_lambda * target_probs) / behaviour_probs``.

    :param trace: one of :data:`TRACES`
    :param trace_lambda: :math:`\\lambda`
    :param target_probs: :math:`\\pi_B(a_k|s_k)` (ignored by ``"boltzmann"``)
    :param behaviour_probs: :math:`\\mu(a_k|s_k)`, required where :func:`needs_behaviour_probs`
    :return: :math:`c_k`, a float for a float, an array of the shape of ``target_probs`` for an array
    """
    if trace == CONSTANT_TRACE:
        if isinstance(target_probs, np.ndarray):
            return np.full(target_probs.shape, float(trace_lambda))
        return float(trace_lambda)
    coefficient = trace_lambda * target_probs
    if trace in TRACES_NEEDING_BEHAVIOUR_PROBS:  # (not needs_behaviour_probs: this is the per-step path)
        if behaviour_probs is None:
            raise ValueError(f"trace={trace!r} needs behaviour_probs (mu of each action taken)")
        coefficient = coefficient / behaviour_probs
    elif trace not in TRACES:
        check_choice("trace", trace, TRACES)
    return coefficient
