"""
The temperature :math:`\\tau` of soft Q-learning (``ent_coef``): its parsed setting and its one owner.

``ent_coef`` is a float (a fixed temperature), ``"auto"`` (learned, from 1.0) or ``"auto_<init>"`` (learned, from
``<init>``), as in SB3's SAC. :meth:`TemperatureSpec.parse` reads it once. :class:`Temperature` holds
:math:`\\log\\tau` (as SAC does, so that :math:`\\tau` stays positive), its optimiser when it is learned, and the
SAC-style update that drives the entropy of the Boltzmann policy :math:`\\pi_B` towards a target:

.. math:: \\min_{\\log\\tau}\\; \\log\\tau \\,\\big(\\mathcal{H}(\\pi_B) - \\bar{\\mathcal{H}}\\big),

whose gradient is the entropy gap :math:`\\mathcal{H}(\\pi_B) - \\bar{\\mathcal{H}}` itself: :math:`\\tau` falls when
:math:`\\pi_B` is more random than the target and rises when it is less.
"""

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
import torch as th
from torch import nn

__all__ = ["Temperature", "TemperatureSpec"]


class TemperatureSpec(NamedTuple):
    """
    A parsed ``ent_coef``: the initial temperature and whether it is learned.

    :param initial: the initial (or fixed) temperature :math:`\\tau_0 > 0`, representable in float32 (as are
        :math:`\\log\\tau_0` and :math:`\\exp(\\log\\tau_0)`: the temperature is stored as its float32 logarithm)
    :param learned: whether :math:`\\tau` is learned (``"auto"`` / ``"auto_<init>"``) or fixed (a float)
    """

    initial: float
    learned: bool

    @classmethod
    def parse(cls, ent_coef: object) -> "TemperatureSpec":
        """
        :param ent_coef: a float > 0, ``"auto"`` (learned from 1.0) or ``"auto_<init>"`` with ``<init>`` > 0
        :return: the spec
        :raises ValueError: naming ``ent_coef`` and the allowed values, also for temperatures that float32 cannot
            hold (:math:`\\tau` or :math:`\\log\\tau` not finite, or :math:`\\tau` rounding to 0)
        """
        allowed = 'a float > 0, "auto" or "auto_<init>" with <init> > 0'
        learned = isinstance(ent_coef, str)
        if isinstance(ent_coef, str):
            initial = 1.0 if ent_coef == "auto" else math.nan
            if ent_coef.startswith("auto_"):
                try:
                    initial = float(ent_coef[len("auto_") :])
                except ValueError:
                    pass
        elif isinstance(ent_coef, numbers.Real) and not isinstance(ent_coef, bool):
            initial = float(ent_coef)
        else:
            initial = math.nan
        if not (initial > 0 and math.isfinite(initial)):
            raise ValueError(f"`ent_coef` must be {allowed}, got {ent_coef!r}")
        # Stored as float32 log(tau), used as float32 tau = exp(log(tau)): both must be finite, tau non-zero
        log_initial = np.float32(math.log(initial))
        with np.errstate(over="ignore", under="ignore"):
            value = np.exp(log_initial)
        if not (np.isfinite(log_initial) and np.isfinite(value) and value > 0):
            raise ValueError(
                f"`ent_coef` must be {allowed}, with a temperature that float32 represents (finite and non-zero, "
                f"about 1e-38 to 1e38), got {ent_coef!r}"
            )
        return cls(initial, learned)


class Temperature(nn.Module):
    """
    The temperature :math:`\\tau` of the Boltzmann policy: the one place that holds its value (as ``log_ent_coef``,
    :math:`\\log\\tau`, a parameter of this module, so that it is saved and moved with the policy that owns the
    module), its optimiser when it is learned, its update step and the changes of setting made when a model is
    loaded with another ``ent_coef``.

    A fixed temperature has no optimiser and its parameter does not require a gradient. A learned one has its own
    Adam optimiser (``optimizer``), never part of the Q-networks' optimiser, stepped by :meth:`update`.

    :param spec: the initial temperature and whether it is learned
    :param learning_rate: the initial learning rate of the Adam optimiser of a learned temperature (the algorithm
        updates it with its learning rate schedule)
    :param optimizer_kwargs: other keyword arguments of that optimiser
    """

    optimizer: th.optim.Optimizer | None

    def __init__(self, spec: TemperatureSpec, learning_rate: float, optimizer_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.log_ent_coef = nn.Parameter(th.tensor(math.log(spec.initial), dtype=th.float32), requires_grad=False)
        self.spec = spec
        self.optimizer = None
        self.reset(spec)

    @property
    def learned(self) -> bool:
        """Whether the temperature is learned (it has an optimiser)."""
        return self.spec.learned

    @property
    def value(self) -> th.Tensor:
        """:math:`\\tau = \\exp(\\log\\tau)`, a detached 0-d tensor on the module's device."""
        return self.log_ent_coef.detach().exp()

    def reset(self, spec: TemperatureSpec) -> None:
        """
        Start again from ``spec``, as if built with it: :math:`\\tau = \\tau_0` and, when learned, a new optimiser
        (without state, with the initial learning rate); a fixed temperature has none.

        :param spec: the new setting
        """
        self.spec = spec
        with th.no_grad():
            self.log_ent_coef.fill_(math.log(spec.initial))
        self.log_ent_coef.requires_grad_(spec.learned)
        self.optimizer = None
        if spec.learned:
            self.optimizer = th.optim.Adam([self.log_ent_coef], lr=self.learning_rate, **self.optimizer_kwargs)

    def reset_value(self) -> None:
        """Set :math:`\\tau` back to the initial value of the spec (the value a fixed temperature always has)."""
        with th.no_grad():
            self.log_ent_coef.fill_(math.log(self.spec.initial))

    def update(self, entropy_gap: th.Tensor) -> th.Tensor:
        """
        One optimiser step on the loss :math:`\\log\\tau\\,(\\mathcal{H}(\\pi_B) - \\bar{\\mathcal{H}})`. Its gradient
        is the entropy gap: it is set directly, without a backward pass.

        :param entropy_gap: :math:`\\mathcal{H}(\\pi_B) - \\bar{\\mathcal{H}}`, a 0-d tensor without gradient
        :return: the loss before the step (0-d, detached), for logging
        """
        if self.optimizer is None:
            raise ValueError("The temperature is fixed (`ent_coef` is a float): it has no update step")
        with th.no_grad():
            loss = self.log_ent_coef * entropy_gap
        self.log_ent_coef.grad = entropy_gap
        self.optimizer.step()
        return loss

    def extra_repr(self) -> str:
        return f"learned={self.spec.learned}, initial={self.spec.initial:g}"
