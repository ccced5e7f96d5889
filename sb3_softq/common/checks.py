"""Argument checks shared by the algorithms and the replay buffers: a clear ``ValueError`` naming the parameter."""

import math
import numbers
from typing import Any


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    integer: bool = False,
    low_open: bool = False,
) -> Any:
    """
    Raise a ``ValueError`` naming ``name`` unless ``value`` is a real number (an integer when ``integer``) in the
    interval from ``low`` to ``high`` (both included, except ``low`` when ``low_open``).

    Python and NumPy numbers are accepted, and for an integer a whole float such as ``1e5`` or ``20.0`` (as SB3
    accepts ``learning_starts=20.0``); booleans, strings, ``None`` and NaN are not.

    :param name: the parameter's name, as the user wrote it
    :param value: the value given
    :param low: the lower bound
    :param high: the upper bound
    :param integer: whether only integers are allowed
    :param low_open: whether ``low`` itself is excluded
    :return: the value, as an ``int`` when ``integer``
    """
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if integer and is_number and not isinstance(value, numbers.Integral):
        is_number = math.isfinite(value) and float(value).is_integer()
    if is_number and (value > low if low_open else value >= low) and value <= high:
        return int(value) if integer else value
    if math.isfinite(high):
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}]"
    else:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    raise ValueError(f"`{name}` must be {'an integer' if integer else 'a number'} {allowed}, got {value!r}")
