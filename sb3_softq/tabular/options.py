"""
The options of :class:`~sb3_softq.tabular.TabularSoftQLambda`: their allowed values, defaults and validation.

Every check raises a ``ValueError`` (a ``TypeError`` for a value of the wrong kind) naming the parameter and what is
allowed; number ranges go through :func:`sb3_softq.common.checks.check_number`.
"""

import math
from collections.abc import Callable
from typing import Any, TypeGuard

import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike

from sb3_softq.common.checks import check_number
from sb3_softq.tabular.soft import FloatArray
from sb3_softq.tabular.traces import TRACES, check_choice, needs_behaviour_probs

Schedule = Callable[[float], float]
BehaviourCallable = Callable[[int, FloatArray], ArrayLike]
BehaviourPolicy = str | float | BehaviourCallable | None

ALGORITHMS = ("one_step", "n_step", "lambda")
TRACE_TYPES = ("accumulating", "replacing")

#: ``n`` of ``"n_step"`` when none is given.
DEFAULT_N = 3
#: ``trace_lambda`` of each algorithm when none is given (the paper's n-step returns use 1).
DEFAULT_TRACE_LAMBDA = {"one_step": 0.0, "n_step": 1.0, "lambda": 0.9}
#: The one algorithm that implements the traces :func:`~sb3_softq.tabular.traces.needs_behaviour_probs`.
BEHAVIOUR_PROBS_ALGORITHM = "n_step"


def is_real(value: Any) -> TypeGuard[int | float | np.floating | np.integer]:
    """:return: whether ``value`` is a Python or NumPy real number (not a bool)."""
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def discrete_size(space: spaces.Space, name: str) -> int:
    """
    :param space: an observation or action space
    :param name: ``"observation"`` or ``"action"``, for the error message
    :return: its number of elements, for a ``Discrete`` space starting at 0
    """
    if not isinstance(space, spaces.Discrete) or int(space.start) != 0:
        raise ValueError(f"TabularSoftQLambda needs a Discrete {name} space starting at 0 (FrozenLake, Taxi...), got {space}")
    return int(space.n)


def check_learning_rate(learning_rate: Any) -> None:
    """Accept a float > 0 or a callable schedule (and ``None``, which :meth:`load` leaves until it is given again)."""
    if learning_rate is None or callable(learning_rate):
        return
    if not is_real(learning_rate):
        raise TypeError(f"learning_rate must be a float > 0 or a callable schedule, got {learning_rate!r}")
    check_number("learning_rate", learning_rate, 0, low_open=True)


def check_options(
    ent_coef: Any, gamma: Any, learning_rate: Any, algorithm: str, trace: str, n: Any, trace_lambda: Any, trace_type: str
) -> None:
    """Raise a ``ValueError`` / ``TypeError`` naming the first invalid option and its allowed values."""
    check_number("ent_coef", ent_coef, 0, low_open=True)
    if not math.isfinite(ent_coef):
        raise ValueError(f"`ent_coef` must be a finite number > 0, got {ent_coef!r}")
    check_number("gamma", gamma, 0, 1)
    check_learning_rate(learning_rate)
    check_choice("algorithm", algorithm, ALGORITHMS)
    check_choice("trace", trace, TRACES)
    if needs_behaviour_probs(trace) and algorithm != BEHAVIOUR_PROBS_ALGORITHM:
        raise ValueError(
            f"trace={trace!r} is only available with algorithm={BEHAVIOUR_PROBS_ALGORITHM!r}; "
            f"use trace='tree_backup' for off-policy {algorithm!r} learning"
        )
    check_choice("trace_type", trace_type, TRACE_TYPES)
    if trace_type == "replacing" and algorithm != "lambda":
        raise ValueError("trace_type='replacing' is only used by algorithm='lambda'")
    if n is not None:
        if algorithm != "n_step":
            raise ValueError(f"n is only used by algorithm='n_step' (got algorithm={algorithm!r}); leave n=None")
        # Only Python / NumPy integers (check_number would also take a whole float such as 3.0)
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if trace_lambda is not None:
        if algorithm == "one_step":
            raise ValueError("trace_lambda is not used by algorithm='one_step'; leave trace_lambda=None")
        check_number("trace_lambda", trace_lambda, 0, 1)


def check_behaviour_policy(behaviour_policy: Any) -> None:
    """Accept ``None`` (on-policy Boltzmann), ``"uniform"``, an epsilon in [0, 1] (epsilon-greedy) or a callable."""
    allowed = "None (on-policy Boltzmann), 'uniform', an epsilon in [0, 1] (epsilon-greedy) or a callable"
    if behaviour_policy is None or callable(behaviour_policy):
        return
    if isinstance(behaviour_policy, str):
        if behaviour_policy != "uniform":
            raise ValueError(f"behaviour_policy must be {allowed}, got {behaviour_policy!r}")
        return
    if not is_real(behaviour_policy):
        raise TypeError(f"behaviour_policy must be {allowed}, got {behaviour_policy!r}")
    check_number("behaviour_policy (epsilon of epsilon-greedy)", behaviour_policy, 0, 1)


def check_behaviour_prob(behaviour_prob: Any) -> float:
    """:return: :math:`\\mu(a_t|s_t)` of the action taken, checked to be in (0, 1]."""
    return float(check_number("behaviour_prob (mu(a_t|s_t) of the action taken)", behaviour_prob, 0, 1, low_open=True))


def check_index(value: Any, size: int, name: str) -> int:
    """
    :param value: a state or action
    :param size: the number of states or actions
    :param name: the parameter's name, for the error message
    :return: ``value`` as an ``int`` in ``[0, size)``
    """
    index = int(value)
    if not 0 <= index < size or index != value:
        raise ValueError(f"{name} must be an integer in [0, {size}), got {value!r}")
    return index
