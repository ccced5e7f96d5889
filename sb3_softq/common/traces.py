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

from typing import Literal, TypeVar

import numpy as np
import torch as th

TraceName = Literal["tree_backup", "boltzmann", "importance_sampling", "retrace"]

#: Every trace, the default first.
TRACES: tuple[str, ...] = ("tree_backup", "boltzmann", "importance_sampling", "retrace")

#: Traces built from a ratio :math:`\\pi_B / \\mu` and therefore needing the behaviour probabilities :math:`\\mu`.
TRACES_NEEDING_BEHAVIOUR_PROBS: tuple[str, ...] = ("importance_sampling", "retrace")

ArrayT = TypeVar("ArrayT", np.ndarray, th.Tensor)


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
    (the table of this module), for NumPy arrays and PyTorch tensors alike (same type in, same type out).

    :param trace: one of :data:`TRACES`
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`
    :param target_probs: :math:`\\pi_B(a_k|s_k)`, any shape
    :param behaviour_probs: :math:`\\mu(a_k|s_k)`, the shape of ``target_probs``; required where
        :func:`needs_behaviour_probs`, ignored otherwise
    :return: :math:`c_k`, the shape and type of ``target_probs``
    """
    check_trace(trace)
    if trace == "boltzmann":
        if isinstance(target_probs, th.Tensor):
            return th.full_like(target_probs, float(trace_lambda))
        return np.full_like(target_probs, float(trace_lambda))
    if trace == "tree_backup":
        return trace_lambda * target_probs
    if behaviour_probs is None:
        raise ValueError(
            f"trace={trace!r} needs the behaviour probabilities mu of the taken actions; "
            "use trace='tree_backup' or 'boltzmann' when they were not stored"
        )
    ratios = target_probs / behaviour_probs
    if trace == "importance_sampling":
        return trace_lambda * ratios
    return trace_lambda * ratios.clip(max=1.0)  # retrace
