"""
Argument checks shared by the algorithms and the replay buffers: a clear ``ValueError`` naming the parameter; and the
check that training and sampling never go on with non-finite numbers (:class:`NonFiniteError`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from enum import Enum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # NumPy only at run time: the tabular package uses these checks without PyTorch
    import torch as th
    from stable_baselines3.common.type_aliases import PyTorchObs


def check_number(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    *,
    integer: bool = False,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
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
    :param high_open: whether ``high`` itself is excluded (with ``high=inf``: the value must be finite)
    :param hint: what the parameter means, appended to the message
    :return: the value, as an ``int`` when ``integer``
    """
    is_number = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if integer and is_number and not isinstance(value, numbers.Integral):
        is_number = math.isfinite(value) and float(value).is_integer()
    if is_number and (value > low if low_open else value >= low) and (value < high if high_open else value <= high):
        return int(value) if integer else value
    kind = "an integer" if integer else ("a finite number" if high_open and high == math.inf else "a number")
    if math.isfinite(high):
        allowed = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    else:
        allowed = f"{'>' if low_open else '>='} {low:g}"
    raise ValueError(f"`{name}` must be {kind} {allowed}{hint}, got {value!r}")


def check_learning_rate(learning_rate: Any) -> Any:
    """
    :param learning_rate: a finite number >= 0 (rl-zoo3's ``enjoy`` loads models with 0), or a schedule (a callable of
        the progress remaining, from 1 to 0)
    :return: ``learning_rate`` (a number as a Python float)
    :raises ValueError: naming ``learning_rate`` otherwise (strings, ``None``, NaN, inf and negative values)
    """
    if callable(learning_rate):
        return learning_rate
    hint = " or a schedule (a function of the progress remaining, from 1 to 0)"
    # A Python float: SB3's schedule takes no NumPy float
    return float(check_number("learning_rate", learning_rate, 0, math.inf, high_open=True, hint=hint))


def check_gradient_steps(gradient_steps: Any) -> int:
    """
    :param gradient_steps: an integer >= 0, or -1 for as many gradient steps as environment steps collected
    :return: ``gradient_steps`` as an ``int``
    :raises ValueError: naming ``gradient_steps`` otherwise
    """
    hint = " (-1: as many gradient steps as environment steps collected in the rollout)"
    return check_number("gradient_steps", gradient_steps, -1, integer=True, hint=hint)


def check_train_freq(train_freq: Any) -> int | tuple[int, Any]:
    """
    :param train_freq: a frequency in steps (an integer >= 1), or a pair ``(frequency, unit)`` with ``unit`` ``"step"``
        or ``"episode"`` (a list of two, as read from YAML, or SB3's ``TrainFreq``, as loaded with a model, too)
    :return: the frequency as an ``int``, or the pair as a tuple (a ``TrainFreq`` stays one)
    :raises ValueError: naming ``train_freq`` otherwise
    """
    allowed = 'an integer >= 1 or a tuple (frequency, unit) with frequency >= 1 and unit "step" or "episode"'
    if isinstance(train_freq, tuple | list):
        if len(train_freq) != 2:
            raise ValueError(f"`train_freq` must be {allowed}, got {train_freq!r}")
        frequency, unit = train_freq
        unit_name = unit.value if isinstance(unit, Enum) else unit
        if unit_name not in ("step", "episode"):
            raise ValueError(f"`train_freq` must be {allowed}, got the unit {unit!r}")
        frequency = check_number("train_freq", frequency, 1, integer=True, hint=" (the frequency of the pair)")
        if hasattr(train_freq, "_fields"):  # SB3's TrainFreq (a named tuple), as a loaded model holds it
            return train_freq._replace(frequency=frequency)  # type: ignore[union-attr]
        return (frequency, unit)
    if isinstance(train_freq, str):
        raise ValueError(f"`train_freq` must be {allowed}, got the string {train_freq!r}")
    return check_number("train_freq", train_freq, 1, integer=True, hint=' (or a tuple (frequency, "step" | "episode"))')


def check_sequence_fits_buffer(sequence_length: int, buffer_size: int, n_envs: int = 1) -> None:
    """
    Refuse windows longer than the replay buffer holds: each env stores ``buffer_size // n_envs`` steps, and a window
    of ``sequence_length`` consecutive steps of one env could never fill.

    :param sequence_length: the window length (checked to be an integer >= 1 before)
    :param buffer_size: the replay buffer's size, over every env
    :param n_envs: the number of environments
    :raises ValueError: naming ``sequence_length`` and ``buffer_size``
    """
    capacity = max(int(buffer_size) // int(n_envs), 1)
    if sequence_length > capacity:
        per_env = f" // n_envs ({n_envs})" if n_envs > 1 else ""
        raise ValueError(
            f"`sequence_length` ({sequence_length}) must be <= `buffer_size`{per_env} = {capacity}, the number of steps "
            "the replay buffer holds per env: a longer window could never fill"
        )


class NonFiniteError(RuntimeError):
    """Training or sampling met NaN or infinite numbers; the message names the likely cause."""


_VEC_CHECK_NAN_ADVICE = (
    "Wrap the environment in SB3's VecCheckNan (stable_baselines3.common.vec_env.VecCheckNan(env, raise_exception=True)) "
    "to find the step that produces NaN or inf; if the environment is fine, the values diverged: lower the learning "
    "rate, rescale the rewards, or fix the temperature (a float ent_coef)."
)


_NON_FINITE_CAUSES = {
    "rewards": "the replay buffer holds NaN or infinite rewards: the environment returned them",
    "observations": "the replay buffer holds NaN or infinite observations: the environment returned them",
    "temperature": "the temperature (ent_coef) became NaN or infinite",
    "behaviour_probs": (
        "the replay buffer holds behaviour probabilities mu <= 0 or infinite, which the importance_sampling and retrace "
        "traces divide by (steps added with wrong `behaviour_probs`)"
    ),
}


def _any_non_finite(values: PyTorchObs) -> bool:
    """Whether observation tensors (or a dict of them) hold NaN or inf: a host read, for the error path only."""
    if isinstance(values, dict):
        return any(_any_non_finite(value) for value in values.values())
    # Integer observations (e.g. uint8 images) are always finite
    return values.is_floating_point() and not bool(values.isfinite().all())


def _stored_arrays(replay_buffer: Any, names: Sequence[str]) -> list[np.ndarray]:
    """The replay buffer's floating-point arrays among ``names`` (dicts of arrays for Dict observations)."""
    arrays = []
    for name in names:
        stored = getattr(replay_buffer, name, None)
        for array in stored.values() if isinstance(stored, dict) else [stored]:
            if isinstance(array, np.ndarray) and np.issubdtype(array.dtype, np.floating):
                arrays.append(array)
    return arrays


def non_finite_causes(replay_buffer: Any = None, log_ent_coef: th.Tensor | None = None) -> list[str]:
    """
    Where NaN or infinite numbers come from, once training met them: the stored rewards, the stored observations, the
    temperature, the stored behaviour probabilities. Reads the whole replay buffer and the temperature on the host: for
    the error path only.

    :param replay_buffer: the model's replay buffer (SB3's, or a sequence replay buffer)
    :param log_ent_coef: the log-temperature
    :return: the sources holding NaN or inf, among ``"rewards"``, ``"observations"``, ``"temperature"`` and
        ``"behaviour_probs"`` (probabilities <= 0 or inf; NaN marks steps stored without them)
    """
    causes = []
    observation_names = ("observations", "next_observations", "terminal_observations")
    for cause, names in (("rewards", ("rewards",)), ("observations", observation_names)):
        if any(not np.isfinite(array).all() for array in _stored_arrays(replay_buffer, names)):
            causes.append(cause)
    if log_ent_coef is not None and not bool(log_ent_coef.detach().isfinite().all()):
        causes.append("temperature")
    behaviour_probs = getattr(replay_buffer, "behaviour_probs", None)
    if isinstance(behaviour_probs, np.ndarray) and ((behaviour_probs <= 0) | np.isinf(behaviour_probs)).any():
        causes.append("behaviour_probs")
    return causes


def check_training_finite(
    losses: dict[str, float | None], replay_buffer: Any = None, log_ent_coef: th.Tensor | None = None
) -> None:
    """
    Stop training that met NaN or infinite numbers, naming the likely cause.

    A NaN or inf anywhere in a gradient step (rewards, observations, temperature, targets, Q-values) makes that step's
    loss NaN or inf, and so the mean of the losses of a ``train()`` call, which is read to the host for the logs anyway:
    this check needs no other host read nor any device operation per gradient step. Only once a loss is not finite are
    the replay buffer and the temperature looked at (:func:`non_finite_causes`) to name the cause.

    :param losses: losses of the ``train()`` call as host numbers, e.g. ``{"loss": ..., "ent_coef_loss": ...}``
        (``None`` for one not computed)
    :param replay_buffer: the model's replay buffer
    :param log_ent_coef: the log-temperature
    :raises NonFiniteError: when a loss is NaN or infinite
    """
    not_finite = [name for name, value in losses.items() if value is not None and not math.isfinite(value)]
    if not not_finite:
        return
    causes = non_finite_causes(replay_buffer, log_ent_coef)
    explained = "; ".join(_NON_FINITE_CAUSES[cause] for cause in causes) or (
        "the rewards and observations in the replay buffer are finite, so the values diverged"
    )
    raise NonFiniteError(
        f"Training met NaN or infinite values ({', '.join(not_finite)} = "
        f"{', '.join(repr(losses[name]) for name in not_finite)}), so the network's parameters are no longer usable. "
        f"Likely cause: {explained}. {_VEC_CHECK_NAN_ADVICE}"
    )


def check_probabilities_finite(probs: np.ndarray, observations: PyTorchObs | None = None) -> None:
    """
    Refuse to sample from action probabilities that hold NaN or inf (an inverse-CDF draw would silently pick action 0).

    :param probs: probabilities ``[batch, n_actions]`` on the host
    :param observations: the observations they were computed from, looked at (a host read) only when ``probs`` is not
        finite, to name the cause
    :raises NonFiniteError: naming the likely cause
    """
    if np.isfinite(probs).all():
        return
    if observations is not None and _any_non_finite(observations):
        cause = "the observations given to the policy are NaN or infinite (the environment returned them)"
    else:
        cause = (
            "the Q-network, the temperature (ent_coef) or the reference policy produced NaN/inf, e.g. after training on "
            "NaN or infinite rewards or observations"
        )
    raise NonFiniteError(
        f"The Boltzmann policy's action probabilities are NaN or infinite, so no action can be sampled: {cause}. "
        + _VEC_CHECK_NAN_ADVICE
    )
