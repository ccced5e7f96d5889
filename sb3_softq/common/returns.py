"""
Multi-step soft returns: Soft Q(λ), Soft Tree Backup and friends, as pure, batch-first functions.

Every multi-step variant of the Soft Q(λ) paper is one backward recursion over a window ``k = 0 .. T-1`` of
consecutive steps (paper §3 and appendices 1-2):

.. math::

    G_k = r_k + \\gamma (1 - d_k) \\left[ V(s_{k+1}) + c_{k+1} \\left( G_{k+1} - Q(s_{k+1}, a_{k+1}) \\right) \\right]

where :math:`d_k` is ``terminated``, :math:`V` the soft value and :math:`c_{k+1}` a trace coefficient. The trace
is cut (:math:`c = 0`, i.e. :math:`G_k = r_k + \\gamma (1 - d_k) V(s_{k+1})`) at the last step of the window and
wherever the episode ends (terminated or truncated). Equivalently, with the one-step soft TD errors
:math:`\\delta_k = r_k + \\gamma (1 - d_k) V(s_{k+1}) - Q(s_k, a_k)` (paper eq. 36, 46):

.. math::

    G_t - Q(s_t, a_t) = \\sum_{k \\ge t} \\Big( \\prod_{i=t+1}^{k} \\gamma (1 - d_{i-1}) c_i \\Big) \\delta_k

The choice of :math:`c` selects the algorithm (:func:`soft_trace_coefficients`); :func:`general_off_policy_returns`
runs the recursion for any coefficients, and :func:`soft_lambda_returns` puts the two together from raw
(target-network) action values.

Time indexing: position ``k`` of every ``[batch, time]`` input describes the transition
:math:`(s_k, a_k, r_k, s_{k+1})`, so ``next_*`` quantities and ``trace_coefs[:, k]`` refer to :math:`s_{k+1}`
and :math:`a_{k+1}` (paper :math:`c_{k+1}`).
"""

import math
import numbers
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import torch as th

from sb3_softq.common.soft import _check_temperature, boltzmann_log_probs, boltzmann_logits
from sb3_softq.common.traces import TRACES as TRACES  # re-exported (owner: sb3_softq.common.traces)
from sb3_softq.common.traces import TRACES_NEEDING_BEHAVIOUR_PROBS as TRACES_NEEDING_BEHAVIOUR_PROBS
from sb3_softq.common.traces import (
    TraceName,
    check_trace,
    needs_behaviour_probs,
    trace_coefficients,
)

# TRACES, TRACES_NEEDING_BEHAVIOUR_PROBS and TraceName stay importable from here, but they are owned by
# sb3_softq.common.traces (autodoc documents neither imported constants nor typing aliases under this module).
__all__ = [
    "SoftLambdaReturns",
    "check_munchausen",
    "compiled_soft_lambda_returns",
    "general_off_policy_returns",
    "munchausen_rewards",
    "soft_lambda_returns",
    "soft_lambda_returns_with_extras",
    "soft_trace_coefficients",
    "trace_diagnostics",
]

#: Windows of at least this length use the doubling scan when the batch holds at most ``SCAN_MAX_BATCH`` windows;
#: every other call without gradient uses the reverse time loop (calls that autograd differentiates always use the
#: scan). Measured on CPU by ``benchmarks/bench_returns.py`` (see ``benchmarks/results/returns_cpu.md``): with the cut
#: positions isolated exactly, the loop is the faster up to 96 steps for 128 windows and more.
SCAN_MIN_LENGTH = 64
#: See ``SCAN_MIN_LENGTH``.
SCAN_MAX_BATCH = 64


class SoftLambdaReturns(NamedTuple):
    """What :func:`soft_lambda_returns_with_extras` computes, ``[batch, time]`` each."""

    #: the soft λ-returns :math:`G_k`
    returns: th.Tensor
    #: the trace coefficients :math:`c_{k+1}` of the recursion (see :func:`soft_trace_coefficients`)
    trace_coefs: th.Tensor


def _check_tensor(name: str, value: object) -> th.Tensor:
    """:return: ``value``, checked to be a tensor (NumPy arrays and lists are refused by name, not converted)."""
    if not isinstance(value, th.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(value).__name__} (convert it with torch.as_tensor)")
    return value


def _check_shape(name: str, tensor: object, shape: tuple[int, ...], expected: str) -> None:
    _check_tensor(name, tensor)
    assert isinstance(tensor, th.Tensor)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"`{name}` must have shape {expected} = {shape}, got {tuple(tensor.shape)}")


def _check_window(name: str, tensor: object) -> th.Tensor:
    """:return: ``tensor``, checked to be a ``[batch, time]`` tensor with ``time >= 1``."""
    tensor = _check_tensor(name, tensor)
    if tensor.dim() != 2 or tensor.shape[1] < 1:
        raise ValueError(f"`{name}` must have shape [batch, time] with time >= 1, got {tuple(tensor.shape)}")
    return tensor


def _check_unit_interval(name: str, value: object) -> float:
    """:return: ``value`` as a float, checked to be a real number in [0, 1] (not a bool, a string, NaN or a tensor)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a real number in [0, 1], got {value!r} of type {type(value).__name__}")
    if not 0.0 <= float(value) <= 1.0:  # NaN fails both comparisons
        raise ValueError(f"`{name}` must be in [0, 1], got {value}")
    return float(value)


def _check_ent_coef(ent_coef: object, dtype: th.dtype | None = None) -> None:
    """
    Check a temperature :math:`\\tau`: a real number, finite, > 0 and representable in ``dtype`` (neither 0 nor inf
    there, nor its reciprocal), or a 0-d floating tensor, whose value is not read (that would synchronise with the
    device).
    """
    _check_temperature("ent_coef", ent_coef, dtype, scalar_tensor=True)


def _check_trace_lambda(trace_lambda: object) -> float:
    return _check_unit_interval("trace_lambda", trace_lambda)


def _action_index(actions: th.Tensor, n_actions: int) -> th.Tensor:
    """
    ``actions`` ``[batch, time]`` as an index ``[batch, time, 1]`` for ``gather`` on the action dimension, clamped
    to ``[0, n_actions)``.

    Actions are arbitrary where the trace is cut (padding, the step after an episode end); clamping keeps
    ``gather`` from failing there (a device-side assert on CUDA) while leaving valid actions unchanged.
    """
    return actions.long().clamp(0, n_actions - 1).unsqueeze(-1)


def _gather_actions(values: th.Tensor, action_index: th.Tensor) -> th.Tensor:
    """``values[b, t, a[b, t]]`` for an index from :func:`_action_index`."""
    return values.gather(-1, action_index).squeeze(-1)


def _reverse_recurrence_loop(base: th.Tensor, coefs: th.Tensor, cut: th.Tensor | None = None) -> th.Tensor:
    """
    Solve :math:`G_k = b_k + a_k G_{k+1}` (:math:`G_T = 0`) with a reverse loop over time.

    Where the recurrence is cut (``cut``; by default where :math:`a_k = 0`), :math:`G_{k+1}` is not read at all
    (``masked_fill``, not a product with 0), so that a non-finite :math:`G_{k+1}` (from a later episode of the window)
    leaves :math:`G_k = b_k` exact and finite.

    The loop writes each step in place into the columns of one copy of ``base`` (two small kernels per step, no
    transposition and no final stacking). Autograd does not allow in-place writes into the views of ``unbind``:
    when a gradient is needed, :func:`_solve_reverse_recurrence` uses :func:`_reverse_recurrence_scan` instead.

    :param base: :math:`b`, ``[batch, time]``
    :param coefs: :math:`a`, ``[batch, time]`` (the last column is not used)
    :param cut: ``[batch, time]`` bool, where :math:`G_{k+1}` is not read; ``coefs == 0`` when ``None``
    :return: :math:`G`, ``[batch, time]``
    """
    if cut is None:
        cut = coefs == 0
    # Batch-major columns (strided views): no transposed copies in or out. Always a copy: written in place.
    returns = base.clone(memory_format=th.contiguous_format)
    returns_by_step, coefs_by_step, cut_by_step = returns.unbind(1), coefs.unbind(1), cut.unbind(1)
    for k in range(len(returns_by_step) - 2, -1, -1):
        returns_by_step[k].addcmul_(coefs_by_step[k], returns_by_step[k + 1].masked_fill(cut_by_step[k], 0.0))
    return returns


def _reverse_recurrence_scan(base: th.Tensor, coefs: th.Tensor, cut: th.Tensor | None = None) -> th.Tensor:
    """
    Solve :math:`G_k = b_k + a_k G_{k+1}` (:math:`G_T = 0`) with a parallel (Hillis-Steele doubling) scan.

    After the pass with stride :math:`s`, :math:`g_k = \\sum_{j=k}^{k+2s-1} (\\prod_{i=k}^{j-1} a_i) b_j` and
    :math:`p_k = \\prod_{i=k}^{k+2s-1} a_i`; each pass combines :math:`g_k \\leftarrow g_k + p_k g_{k+s}` and
    :math:`p_k \\leftarrow p_k p_{k+s}`, so :math:`\\lceil \\log_2 T \\rceil` passes give :math:`G`. Only
    products are formed, never quotients, so coefficients equal to zero are exact. Where the recurrence is cut
    (``cut``, where :math:`a_k` is taken as 0; by default where :math:`a_k = 0`), a bool mask carried beside
    :math:`p` marks the ranges that contain a cut, and there the right-hand terms :math:`g_{k+s}` and
    :math:`p_{k+s}` are not read (``masked_fill``): non-finite values beyond a cut never reach :math:`g_k`, in the
    values or in their gradients (a product :math:`p_k` alone could not mark it: NaN times 0 is NaN).

    :param base: :math:`b`, ``[batch, time]``
    :param coefs: :math:`a`, ``[batch, time]`` (the last column is not used)
    :param cut: ``[batch, time]`` bool, where :math:`G_{k+1}` is not read; ``coefs == 0`` when ``None``
    :return: :math:`G`, ``[batch, time]``
    """
    n_steps = base.shape[-1]
    # open_k: no cut in [k, k + 2 stride) (k itself included): only then is anything beyond read
    open_ = coefs != 0 if cut is None else ~cut
    g, p = base, coefs if cut is None else coefs.masked_fill(cut, 0.0)
    stride = 1
    while stride < n_steps:
        closed = ~open_[:, :-stride]
        # Positions k >= T - stride have nothing left to add: G_{k+stride} = 0 beyond the window.
        ahead = g[:, stride:].masked_fill(closed, 0.0)
        g = th.cat((th.addcmul(g[:, :-stride], p[:, :-stride], ahead), g[:, -stride:]), dim=-1)
        if 2 * stride < n_steps:
            # p_k for k >= T - stride is never read again (the next stride is 2 * stride).
            p = th.cat((p[:, :-stride] * p[:, stride:].masked_fill(closed, 0.0), p[:, -stride:]), dim=-1)
            open_ = th.cat((open_[:, :-stride] & open_[:, stride:], open_[:, -stride:]), dim=-1)
        stride *= 2
    return g


def _solve_reverse_recurrence(base: th.Tensor, coefs: th.Tensor, cut: th.Tensor | None = None) -> th.Tensor:
    """
    :math:`G_k = b_k + a_k G_{k+1}` with the implementation measured fastest for this window length (the scan
    whenever autograd has to differentiate through it); ``G_{k+1}`` is not read where ``cut`` (see the solvers).
    """
    needs_grad = th.is_grad_enabled() and (base.requires_grad or coefs.requires_grad)
    if needs_grad or (base.shape[-1] >= SCAN_MIN_LENGTH and base.shape[0] <= SCAN_MAX_BATCH):
        return _reverse_recurrence_scan(base, coefs, cut)
    return _reverse_recurrence_loop(base, coefs, cut)


def _cut_mask(continues: th.Tensor) -> th.Tensor:
    """Where the trace is cut: ``continues`` is 0, and always at the last time index (the window ends there)."""
    cut = ~continues if continues.dtype == th.bool else continues == 0
    cut[:, -1].fill_(True)
    return cut


def general_off_policy_returns(
    rewards: th.Tensor,
    next_values: th.Tensor,
    next_action_values: th.Tensor,
    trace_coefs: th.Tensor,
    discounts: th.Tensor,
    continues: th.Tensor,
) -> th.Tensor:
    """
    General off-policy multi-step returns from state values, action values and trace coefficients.

    For every time index ``k`` (backwards from the end of the window):

    .. math::

        G_k = r_k + \\gamma_k \\left[ V_{k+1} + \\mathrm{cont}_k \\, c_{k+1} \\left( G_{k+1} - Q_{k+1} \\right) \\right]

    with :math:`\\gamma_k` = ``discounts[:, k]`` :math:`= \\gamma (1 - \\mathrm{terminated}_k)`,
    :math:`V_{k+1}` = ``next_values[:, k]``, :math:`Q_{k+1}` = ``next_action_values[:, k]``
    :math:`= Q(s_{k+1}, a_{k+1})` and :math:`c_{k+1}` = ``trace_coefs[:, k]``. Where ``continues`` is 0 (and
    always at the last time index) the trace is cut: :math:`G_k = r_k + \\gamma_k V_{k+1}`. This is rlax's
    ``general_off_policy_returns_from_q_and_v``, batch-first.

    Cut positions are isolated exactly: there :math:`c_{k+1}`, :math:`Q_{k+1}` and :math:`G_{k+1}` are not read at
    all (selected away with ``masked_fill``, never multiplied by 0), so a NaN or an infinity in one episode of a window
    (a reward, a value, a ratio with :math:`\\mu = 0` on padding) never reaches the returns of another episode, in the
    values or in their gradients. The returns at position ``t`` depend only on the inputs at the positions
    ``t .. e`` of its episode (``e`` the first cut at or after ``t``), ``next_action_values`` and ``trace_coefs``
    at ``t .. e - 1`` only.

    :param rewards: :math:`r_k`, ``[batch, time]`` (``time >= 1``)
    :param next_values: :math:`V(s_{k+1})`, ``[batch, time]``
    :param next_action_values: :math:`Q(s_{k+1}, a_{k+1})`, ``[batch, time]`` (any value where the trace is cut)
    :param trace_coefs: :math:`c_{k+1}`, ``[batch, time]`` (any value where the trace is cut)
    :param discounts: :math:`\\gamma (1 - \\mathrm{terminated}_k)`, ``[batch, time]``
    :param continues: ``[batch, time]``, bool or 0/1: whether step ``k + 1`` belongs to the same episode (and is
        a valid step of the window); the value at the last time index is ignored
    :return: the returns :math:`G_k`, ``[batch, time]``, in the dtype of ``next_values``
    """
    shape = tuple(_check_window("rewards", rewards).shape)
    for name, tensor in (
        ("next_values", next_values),
        ("next_action_values", next_action_values),
        ("trace_coefs", trace_coefs),
        ("discounts", discounts),
        ("continues", continues),
    ):
        _check_shape(name, tensor, shape, "[batch, time]")
    dtype = next_values.dtype if next_values.is_floating_point() else th.get_default_dtype()
    rewards, next_values, next_action_values, trace_coefs, discounts = (
        tensor.to(dtype) for tensor in (rewards, next_values, next_action_values, trace_coefs, discounts)
    )
    return _general_returns(rewards, next_values, next_action_values, trace_coefs, discounts, continues)


def _general_returns(
    rewards: th.Tensor,
    next_values: th.Tensor,
    next_action_values: th.Tensor,
    trace_coefs: th.Tensor,
    discounts: th.Tensor,
    continues: th.Tensor,
) -> th.Tensor:
    """:func:`general_off_policy_returns` on checked inputs of one floating dtype."""
    # G_k = r_k + g_k V_{k+1} - a_k Q_{k+1} + a_k G_{k+1}, with a_k = g_k c_{k+1} where the trace continues; where it
    # is cut (also at the last time index, where the window ends) a_k, Q_{k+1} and G_{k+1} are selected away.
    cut = _cut_mask(continues)
    coefs = (discounts * trace_coefs).masked_fill_(cut, 0.0)
    base = th.addcmul(rewards, discounts, next_values).addcmul_(coefs, next_action_values.masked_fill(cut, 0.0), value=-1.0)
    return _solve_reverse_recurrence(base, coefs, cut)


def soft_trace_coefficients(
    next_q_values: th.Tensor,
    next_actions: th.Tensor,
    trace_lambda: float,
    ent_coef: float | th.Tensor,
    trace: TraceName | str = "tree_backup",
    next_log_prior: th.Tensor | None = None,
    next_behaviour_probs: th.Tensor | None = None,
) -> th.Tensor:
    """
    Trace coefficients :math:`c_{k+1}` of the Soft Q(λ) family, from the rules of :mod:`sb3_softq.common.traces`
    (:func:`~sb3_softq.common.traces.trace_coefficients`) applied to the Boltzmann policy of the action values.

    With :math:`\\pi_B(a|s) = \\mathrm{softmax}(Q(s, \\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s))_a` the Boltzmann
    policy, :math:`\\lambda` = ``trace_lambda`` and :math:`\\mu` = ``next_behaviour_probs``:

    - ``"tree_backup"``: :math:`c = \\lambda \\pi_B(a_{k+1}|s_{k+1})`, Soft Tree Backup / off-policy Soft Q(λ)
      (paper eq. 14, 17, 30-36, 45-48); unbiased for any behaviour policy.
    - ``"boltzmann"``: :math:`c = \\lambda`, n-step soft Q-learning / Soft Q(λ) under the Boltzmann policy
      (paper eq. 12, 15-16, 23, 43-44); :math:`Q^*` is still its fixed point, but its backup contracts
      only when the behaviour policy is :math:`\\pi_B` (:math:`c \\le \\pi_B/\\mu`): off-policy it can diverge.
    - ``"importance_sampling"``: :math:`c = \\lambda \\pi_B(a_{k+1}|s_{k+1}) / \\mu(a_{k+1}|s_{k+1})`,
      per-decision importance sampling (paper eq. 25-27); unbiased, high variance.
    - ``"retrace"``: :math:`c = \\lambda \\min(1, \\pi_B(a_{k+1}|s_{k+1}) / \\mu(a_{k+1}|s_{k+1}))`, soft Retrace
      (Munos et al. 2016 applied to the soft backup; beyond the paper).

    :param next_q_values: :math:`Q(s_{k+1}, \\cdot)`, floating ``[batch, time, n_actions]`` (``n_actions >= 1``)
    :param next_actions: :math:`a_{k+1}`, integer ``[batch, time]`` (``[batch, time, 1]`` is accepted); values
        where the trace is cut are arbitrary (they are clamped into ``[0, n_actions)``)
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`
    :param ent_coef: temperature :math:`\\tau > 0`, a float (finite, and neither 0 nor inf in the dtype of
        ``next_q_values``) or a 0-d tensor
    :param trace: one of ``"tree_backup"``, ``"boltzmann"``, ``"importance_sampling"``, ``"retrace"``
    :param next_log_prior: :math:`\\log\\bar\\pi(\\cdot|s_{k+1})`, ``[batch, time, n_actions]``; ``None`` for uniform
    :param next_behaviour_probs: :math:`\\mu(a_{k+1}|s_{k+1})`, ``[batch, time]``; required for
        ``"importance_sampling"`` and ``"retrace"``, ignored otherwise. Where it is 0 (padding) the
        coefficient is not finite; :func:`general_off_policy_returns` selects those positions away.
    :return: the trace coefficients :math:`c_{k+1}`, ``[batch, time]``
    """
    next_actions, trace_lambda = _check_soft_inputs(
        next_q_values, next_actions, trace_lambda, ent_coef, trace, next_log_prior, next_behaviour_probs
    )
    action_index = _action_index(next_actions, next_q_values.shape[-1])
    _, action_log_probs = _soft_value_and_action_log_probs(next_q_values, action_index, ent_coef, next_log_prior)
    return _trace_coefficients(action_log_probs, trace_lambda, trace, next_behaviour_probs)


def _check_soft_inputs(
    next_q_values: th.Tensor,
    next_actions: th.Tensor,
    trace_lambda: float,
    ent_coef: float | th.Tensor,
    trace: str,
    next_log_prior: th.Tensor | None,
    next_behaviour_probs: th.Tensor | None,
) -> tuple[th.Tensor, float]:
    """Check the inputs shared by :func:`soft_trace_coefficients` and :func:`soft_lambda_returns`.

    :return: ``next_actions`` as ``[batch, time]`` and ``trace_lambda`` as a float
    """
    check_trace(trace)
    trace_lambda = _check_trace_lambda(trace_lambda)
    next_q_values = _check_tensor("next_q_values", next_q_values)
    if next_q_values.dim() != 3 or next_q_values.shape[1] < 1 or next_q_values.shape[2] < 1:
        raise ValueError(
            "`next_q_values` must have shape [batch, time, n_actions] with time >= 1 and n_actions >= 1, "
            f"got {tuple(next_q_values.shape)}"
        )
    if not next_q_values.is_floating_point():
        raise TypeError(f"`next_q_values` must be a floating tensor, got dtype {next_q_values.dtype}")
    _check_ent_coef(ent_coef, next_q_values.dtype)
    next_actions = _check_tensor("next_actions", next_actions)
    if next_actions.is_floating_point() or next_actions.is_complex() or next_actions.dtype == th.bool:
        raise TypeError(f"`next_actions` must be an integer tensor (action indices), got dtype {next_actions.dtype}")
    if next_actions.dim() == 3 and next_actions.shape[-1] == 1:
        next_actions = next_actions.squeeze(-1)
    _check_shape("next_actions", next_actions, tuple(next_q_values.shape[:2]), "[batch, time]")
    if next_log_prior is not None:
        _check_shape("next_log_prior", next_log_prior, tuple(next_q_values.shape), "[batch, time, n_actions]")
    if needs_behaviour_probs(trace):
        if next_behaviour_probs is None:
            raise ValueError(
                f"trace={trace!r} needs `next_behaviour_probs` (mu(a_{{k+1}}|s_{{k+1}}), shape [batch, time]); "
                "use trace='tree_backup' or 'boltzmann' when behaviour probabilities were not stored"
            )
        _check_shape("next_behaviour_probs", next_behaviour_probs, tuple(next_q_values.shape[:2]), "[batch, time]")
    return next_actions, trace_lambda


def _soft_value_and_action_log_probs(
    next_q_values: th.Tensor, action_index: th.Tensor, ent_coef: float | th.Tensor, next_log_prior: th.Tensor | None
) -> tuple[th.Tensor, th.Tensor]:
    """
    :math:`V(s_{k+1}) = \\tau \\log Z` and :math:`\\log\\pi_B(a_{k+1}|s_{k+1}) = \\ell_{a_{k+1}} - \\log Z` from one
    ``logsumexp`` of the Boltzmann logits :math:`\\ell = Q/\\tau + \\log\\bar\\pi` (what
    :func:`~sb3_softq.common.soft.soft_value` and :func:`~sb3_softq.common.soft.boltzmann_log_probs` compute apart).

    :param action_index: :math:`a_{k+1}` from :func:`_action_index`
    :return: the soft values and the log-probabilities of the next actions, ``[batch, time]`` each
    """
    logits = boltzmann_logits(next_q_values, ent_coef, next_log_prior)
    log_normaliser = th.logsumexp(logits, dim=-1)
    return ent_coef * log_normaliser, _gather_actions(logits, action_index) - log_normaliser


def _trace_coefficients(
    action_log_probs: th.Tensor, trace_lambda: float, trace: str, next_behaviour_probs: th.Tensor | None
) -> th.Tensor:
    """
    The coefficients of :func:`soft_trace_coefficients` from :math:`\\log\\pi_B(a_{k+1}|s_{k+1})` ``[batch, time]``:
    the rule of :func:`~sb3_softq.common.traces.trace_coefficients` (checked inputs).
    """
    if needs_behaviour_probs(trace):
        assert next_behaviour_probs is not None  # checked by _check_soft_inputs
        next_behaviour_probs = next_behaviour_probs.to(action_log_probs.dtype)
    # "boltzmann" reads only the shape of the probabilities: exp is skipped for it.
    target_probs = action_log_probs if trace == "boltzmann" else action_log_probs.exp()
    return trace_coefficients(trace, trace_lambda, target_probs, next_behaviour_probs)


def soft_lambda_returns_with_extras(
    rewards: th.Tensor,
    next_q_values: th.Tensor,
    next_actions: th.Tensor,
    terminated: th.Tensor,
    continues: th.Tensor,
    gamma: float,
    trace_lambda: float,
    ent_coef: float | th.Tensor,
    trace: TraceName | str = "tree_backup",
    next_log_prior: th.Tensor | None = None,
    next_behaviour_probs: th.Tensor | None = None,
) -> SoftLambdaReturns:
    """
    Soft Q(λ) targets and the trace coefficients they used (rlax's "extras"), for every position of a batch of
    windows: :func:`soft_lambda_returns` with the coefficients :math:`c_{k+1}` handed back beside the returns, so
    that a caller logging them (:func:`trace_diagnostics`) does not compute them again.

    .. math::

        G_k = r_k + \\gamma (1 - d_k) \\left[ V(s_{k+1}) + c_{k+1} \\left( G_{k+1} - Q(s_{k+1}, a_{k+1}) \\right) \\right]

    with :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) e^{Q(s,a)/\\tau}` (:func:`~sb3_softq.common.soft.soft_value`),
    :math:`c_{k+1}` from :func:`soft_trace_coefficients` and the trace cut (:math:`G_k = r_k + \\gamma (1 - d_k)
    V(s_{k+1})`) where ``continues`` is 0 and at the last step of the window. Special cases: ``trace_lambda=0``
    (or ``time=1``) is one-step soft Q-learning, :math:`r_k + \\gamma (1 - d_k) V(s_{k+1})` (paper eq. 10-11);
    ``trace_lambda=1`` with ``"tree_backup"`` over a window of n steps is the n-step Soft Tree Backup return
    :math:`G_{t:t+n}` (paper eq. 17); for :math:`\\lambda < 1` it is the mixture
    :math:`(1 - \\lambda) \\sum_n \\lambda^{n-1} G^{(n)}` of n-step returns (paper eq. 37).
    All inputs are expected from target networks, without gradient; any device and floating dtype.

    :param rewards: :math:`r_k`, ``[batch, time]``
    :param next_q_values: :math:`Q(s_{k+1}, \\cdot)`, ``[batch, time, n_actions]`` (``s_{k+1}`` is the true final
        observation where the episode ended)
    :param next_actions: :math:`a_{k+1}`, integer ``[batch, time]`` (``[batch, time, 1]`` is accepted); arbitrary
        where ``continues`` is 0
    :param terminated: ``[batch, time]``, bool or 0/1: the episode terminated at step ``k`` (no bootstrap)
    :param continues: ``[batch, time]``, bool or 0/1: step ``k + 1`` is in the same episode and in the window;
        0 where the episode terminated or was truncated; the value at the last time index is ignored
    :param gamma: discount factor :math:`\\gamma \\in [0, 1]`
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`
    :param ent_coef: temperature :math:`\\tau > 0`, a float or a 0-d tensor
    :param trace: one of ``"tree_backup"`` (default), ``"boltzmann"``, ``"importance_sampling"``, ``"retrace"``
        (see :func:`soft_trace_coefficients`)
    :param next_log_prior: :math:`\\log\\bar\\pi(\\cdot|s_{k+1})`, ``[batch, time, n_actions]``; ``None`` for uniform
    :param next_behaviour_probs: :math:`\\mu(a_{k+1}|s_{k+1})`, ``[batch, time]``, the behaviour probability of
        the stored next action; required for ``"importance_sampling"`` and ``"retrace"``
    :return: the returns :math:`G_k` and the trace coefficients :math:`c_{k+1}`, ``[batch, time]`` each, in the
        dtype of ``next_q_values``; a NaN or an infinity in one episode of a window never reaches the returns of
        another (see :func:`general_off_policy_returns`)
    :raises TypeError: naming the argument, for a value that is not a tensor (NumPy arrays and lists included), a
        non-integer ``next_actions``, non-floating ``next_q_values``, or a ``gamma`` / ``trace_lambda`` / ``ent_coef``
        that is not a real number (booleans and strings included)
    :raises ValueError: naming the argument, for a shape mismatch, ``time == 0`` or ``n_actions == 0``, ``gamma`` or
        ``trace_lambda`` outside [0, 1] (NaN included), a float ``ent_coef`` that is not finite and > 0 or that
        underflows or overflows in the dtype of ``next_q_values``, an unknown ``trace``, or missing
        ``next_behaviour_probs``
    """
    gamma, next_actions, trace_lambda = _check_returns_inputs(
        rewards, next_q_values, next_actions, terminated, continues, gamma, trace_lambda, ent_coef, trace,
        next_log_prior, next_behaviour_probs,
    )  # fmt: skip
    return SoftLambdaReturns(
        *_soft_lambda_core(
            rewards,
            next_q_values,
            next_actions,
            terminated,
            continues,
            gamma,
            trace_lambda,
            ent_coef,
            trace,
            next_log_prior,
            next_behaviour_probs,
        )
    )


def _check_returns_inputs(
    rewards: th.Tensor,
    next_q_values: th.Tensor,
    next_actions: th.Tensor,
    terminated: th.Tensor,
    continues: th.Tensor,
    gamma: float,
    trace_lambda: float,
    ent_coef: float | th.Tensor,
    trace: str,
    next_log_prior: th.Tensor | None,
    next_behaviour_probs: th.Tensor | None,
) -> tuple[float, th.Tensor, float]:
    """Check the arguments of :func:`soft_lambda_returns_with_extras`.

    :return: ``gamma`` as a float, ``next_actions`` as ``[batch, time]`` and ``trace_lambda`` as a float
    """
    gamma = _check_unit_interval("gamma", gamma)
    next_actions, trace_lambda = _check_soft_inputs(
        next_q_values, next_actions, trace_lambda, ent_coef, trace, next_log_prior, next_behaviour_probs
    )
    batch_time = tuple(next_q_values.shape[:2])
    for name, tensor in (("rewards", rewards), ("terminated", terminated), ("continues", continues)):
        _check_shape(name, tensor, batch_time, "[batch, time]")
    return gamma, next_actions, trace_lambda


def _soft_lambda_core(
    rewards: th.Tensor,
    next_q_values: th.Tensor,
    next_actions: th.Tensor,
    terminated: th.Tensor,
    continues: th.Tensor,
    gamma: float,
    trace_lambda: float,
    ent_coef: float | th.Tensor,
    trace: str,
    next_log_prior: th.Tensor | None,
    next_behaviour_probs: th.Tensor | None,
) -> tuple[th.Tensor, th.Tensor]:
    """The tensor work of :func:`soft_lambda_returns_with_extras` on checked inputs (what
    :func:`compiled_soft_lambda_returns` compiles): the returns and the trace coefficients."""
    dtype = next_q_values.dtype
    action_index = _action_index(next_actions, next_q_values.shape[-1])
    next_values, action_log_probs = _soft_value_and_action_log_probs(next_q_values, action_index, ent_coef, next_log_prior)
    trace_coefs = _trace_coefficients(action_log_probs, trace_lambda, trace, next_behaviour_probs)
    next_action_values = _gather_actions(next_q_values, action_index)
    discounts = th.rsub(terminated.to(dtype), gamma, alpha=gamma)  # gamma (1 - terminated), one kernel, exact
    returns = _general_returns(rewards.to(dtype), next_values, next_action_values, trace_coefs, discounts, continues)
    return returns, trace_coefs


def soft_lambda_returns(
    rewards: th.Tensor,
    next_q_values: th.Tensor,
    next_actions: th.Tensor,
    terminated: th.Tensor,
    continues: th.Tensor,
    gamma: float,
    trace_lambda: float,
    ent_coef: float | th.Tensor,
    trace: TraceName | str = "tree_backup",
    next_log_prior: th.Tensor | None = None,
    next_behaviour_probs: th.Tensor | None = None,
) -> th.Tensor:
    """
    Soft Q(λ) targets: multi-step soft returns for every position of a batch of windows.

    .. math::

        G_k = r_k + \\gamma (1 - d_k) \\left[ V(s_{k+1}) + c_{k+1} \\left( G_{k+1} - Q(s_{k+1}, a_{k+1}) \\right) \\right]

    The returns of :func:`soft_lambda_returns_with_extras` (which documents every argument), without the trace
    coefficients.

    :return: the returns :math:`G_k`, ``[batch, time]``, in the dtype of ``next_q_values``
    """
    return soft_lambda_returns_with_extras(
        rewards,
        next_q_values,
        next_actions,
        terminated,
        continues,
        gamma,
        trace_lambda,
        ent_coef,
        trace=trace,
        next_log_prior=next_log_prior,
        next_behaviour_probs=next_behaviour_probs,
    ).returns


def compiled_soft_lambda_returns(**compile_kwargs: Any) -> Callable[..., SoftLambdaReturns]:
    """
    An opt-in ``torch.compile`` of :func:`soft_lambda_returns_with_extras`: same arguments, same checks, same
    results up to rounding (the compiler fuses and reorders the floating-point operations: about 1e-7 relative in
    float32), with the soft value, the trace coefficients and the whole reverse recurrence fused into a few kernels.

    Not the default: on CPU the first call compiles for tens of seconds (Inductor's start-up and a C++ build), and
    every new window shape (``batch``, ``time``) or trace compiles again for seconds, which pays only in long runs
    with fixed shapes. Measured by ``benchmarks/bench_returns.py`` (``benchmarks/results/returns_cpu.md``). Where
    no compiler works (no C++ toolchain on CPU, no Triton on GPU) the first call warns once and every call runs
    the eager functions.

    :param compile_kwargs: passed to ``torch.compile`` (``dynamic=False`` unless given)
    :return: a function with the signature of :func:`soft_lambda_returns_with_extras`
    """
    from torch._dynamo.exc import BackendCompilerFailed  # imported here: torch._dynamo is slow to import

    compiled_core = th.compile(_soft_lambda_core, **{"dynamic": False, **compile_kwargs})
    core: list[Callable[..., tuple[th.Tensor, th.Tensor]]] = [compiled_core]

    def soft_lambda_returns_compiled(
        rewards: th.Tensor,
        next_q_values: th.Tensor,
        next_actions: th.Tensor,
        terminated: th.Tensor,
        continues: th.Tensor,
        gamma: float,
        trace_lambda: float,
        ent_coef: float | th.Tensor,
        trace: TraceName | str = "tree_backup",
        next_log_prior: th.Tensor | None = None,
        next_behaviour_probs: th.Tensor | None = None,
    ) -> SoftLambdaReturns:
        gamma, next_actions, trace_lambda = _check_returns_inputs(
            rewards, next_q_values, next_actions, terminated, continues, gamma, trace_lambda, ent_coef, trace,
            next_log_prior, next_behaviour_probs,
        )  # fmt: skip
        args = (rewards, next_q_values, next_actions, terminated, continues, gamma, trace_lambda, ent_coef, trace,
                next_log_prior, next_behaviour_probs)  # fmt: skip
        try:
            return SoftLambdaReturns(*core[0](*args))
        except BackendCompilerFailed as error:
            if core[0] is _soft_lambda_core:
                raise
            warnings.warn(f"torch.compile failed ({type(error.inner_exception).__name__}): running the eager returns")
            core[0] = _soft_lambda_core
            return SoftLambdaReturns(*_soft_lambda_core(*args))

    return soft_lambda_returns_compiled


def trace_diagnostics(trace_coefs: th.Tensor, continues: th.Tensor, valid: th.Tensor | None = None) -> dict[str, th.Tensor]:
    """
    Summaries of the trace coefficients of a batch, for logging (``train/...``), as 0-d tensors on the device of
    ``trace_coefs``: nothing is read back to the host here, so that a caller can gather every value it logs and
    read them all at once (one synchronisation per ``train()`` call instead of one per value).

    Here a continuing step is a (valid) position ``k`` whose trace continues to ``k + 1`` inside the window
    (``continues[:, k]`` true and ``k < time - 1``), and :math:`\\hat c_k` = ``trace_coefs[:, k]`` where the
    step continues, else 0 (selected, not multiplied: coefficients at other positions are never read).

    - ``"mean_trace_coef"``: mean of :math:`c` over continuing steps.
    - ``"effective_trace_length"``: mean over valid positions ``t`` of
      :math:`L_t = \\sum_{k \\ge t} \\prod_{i=t}^{k-1} \\hat c_i` (in the paper's indexing
      :math:`\\sum_{k \\ge t} \\prod_{i=t+1}^{k} c_i`), the number of steps a TD error reaches back with
      discounting left out: 1 when every trace is cut, the remaining window length when every :math:`c = 1`.
    - ``"cut_fraction"``: fraction of continuing steps with :math:`c < 0.05` (traces effectively cut).

    The two means over continuing steps are 0 when there is none (e.g. windows of length 1), the mean over valid
    positions is 0 when there is none.

    :param trace_coefs: :math:`c_{k+1}`, ``[batch, time]`` (``time >= 1``)
    :param continues: ``[batch, time]``, bool or 0/1, as for :func:`general_off_policy_returns`
    :param valid: ``[batch, time]`` bool or 0/1 mask of valid positions; ``None`` when all are valid
    :return: a dict of 0-d ``float32`` tensors with the keys above (``{key: float(value)}`` or one
        ``torch.stack(...).tolist()`` converts them)
    """
    shape = tuple(_check_window("trace_coefs", trace_coefs).shape)
    _check_shape("continues", continues, shape, "[batch, time]")
    if valid is not None:
        _check_shape("valid", valid, shape, "[batch, time]")
        valid_mask = valid if valid.dtype == th.bool else valid != 0
    coefs = trace_coefs.detach().to(th.float32)  # float32: available on every device (float64 is not on MPS)
    stops = _cut_mask(continues)
    if valid is not None:
        stops |= ~valid_mask
    continuing = ~stops
    kept = coefs.masked_fill(stops, 0.0)
    # L_t = 1 + c_t L_{t+1}: the same reverse recurrence as the returns, cut where the step does not continue.
    lengths = _solve_reverse_recurrence(th.ones_like(kept), kept, stops)

    n_continuing = continuing.sum().clamp_(min=1)
    cut_fraction = (continuing & (coefs < 0.05)).sum() / n_continuing
    if valid is None:
        effective_trace_length = lengths.sum() / max(lengths.numel(), 1)
    else:
        effective_trace_length = lengths.masked_fill(~valid_mask, 0.0).sum() / valid_mask.sum().clamp_(min=1)
    return {
        "mean_trace_coef": kept.sum() / n_continuing,
        "effective_trace_length": effective_trace_length,
        "cut_fraction": cut_fraction,
    }


def check_munchausen(munchausen_coef: float, munchausen_clip: float) -> tuple[float, float]:
    """
    Check the two parameters of the Munchausen term (:func:`munchausen_rewards`).

    :param munchausen_coef: :math:`\\alpha \\in [0, 1]` (0 turns the term off)
    :param munchausen_clip: :math:`l_0 < 0`, finite
    :return: both as Python floats
    :raises TypeError: for a value that is not a real number (booleans included)
    :raises ValueError: naming the parameter and the allowed range otherwise
    """
    for name, value in (("munchausen_coef", munchausen_coef), ("munchausen_clip", munchausen_clip)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"`{name}` must be a real number, got {value!r} of type {type(value).__name__}")
    if not 0.0 <= float(munchausen_coef) <= 1.0:
        raise ValueError(
            f"`munchausen_coef` (alpha) must be in [0, 1] (0 turns the Munchausen term off), got {munchausen_coef}"
        )
    if not (math.isfinite(float(munchausen_clip)) and float(munchausen_clip) < 0.0):
        raise ValueError(f"`munchausen_clip` (l_0) must be a finite number < 0 (M-DQN uses -1), got {munchausen_clip}")
    return float(munchausen_coef), float(munchausen_clip)


def munchausen_rewards(
    rewards: th.Tensor,
    q_values: th.Tensor,
    actions: th.Tensor,
    ent_coef: float | th.Tensor,
    munchausen_coef: float,
    munchausen_clip: float = -1.0,
    log_prior: th.Tensor | None = None,
) -> th.Tensor:
    """
    Rewards with the Munchausen term (Vieillard, Pietquin and Geist 2020, "Munchausen Reinforcement Learning"):

    .. math::

        r'_k = r_k + \\alpha \\max\\left( \\tau \\log \\pi_B(a_k|s_k), l_0 \\right)

    with :math:`\\pi_B` the Boltzmann policy of ``q_values`` (the target network's, minimum over critics, the prior
    included) and :math:`a_k` the stored action. Every reward of a return gets its own term before the recursion of
    :func:`soft_lambda_returns`, so one-step targets are M-DQN's and the traces are unchanged. Since
    :math:`\\tau \\log \\pi_B \\le 0`, the clip :math:`l_0 < 0` acts only from below. ``munchausen_coef=0`` returns
    ``rewards`` itself (bit for bit the plain algorithm).

    :param rewards: :math:`r_k`, any shape ``[...]`` (``[batch]`` for one step, ``[batch, time]`` for windows)
    :param q_values: :math:`Q(s_k, \\cdot)`, ``[..., n_actions]``
    :param actions: :math:`a_k`, integer ``[...]`` (``[..., 1]`` is accepted)
    :param ent_coef: temperature :math:`\\tau > 0`, a float or a 0-d tensor (the current one when it is learned)
    :param munchausen_coef: :math:`\\alpha \\in [0, 1]`
    :param munchausen_clip: :math:`l_0 < 0`
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s_k)`, broadcastable to ``q_values``; ``None`` for uniform
    :return: :math:`r'_k`, the shape of ``rewards``, in the dtype of ``q_values`` (``rewards`` itself when
        :math:`\\alpha = 0`)
    """
    munchausen_coef, munchausen_clip = check_munchausen(munchausen_coef, munchausen_clip)
    q_values = _check_tensor("q_values", q_values)
    if q_values.dim() < 1 or q_values.shape[-1] < 1:
        raise ValueError(f"`q_values` must have shape [..., n_actions] with n_actions >= 1, got {tuple(q_values.shape)}")
    if not q_values.is_floating_point():
        raise TypeError(f"`q_values` must be a floating tensor, got dtype {q_values.dtype}")
    _check_ent_coef(ent_coef, q_values.dtype)
    actions = _check_tensor("actions", actions)
    if actions.is_floating_point() or actions.is_complex() or actions.dtype == th.bool:
        raise TypeError(f"`actions` must be an integer tensor (action indices), got dtype {actions.dtype}")
    if actions.dim() == q_values.dim() and actions.shape[-1] == 1:
        actions = actions.squeeze(-1)
    _check_shape("actions", actions, tuple(q_values.shape[:-1]), "q_values.shape[:-1]")
    _check_shape("rewards", rewards, tuple(q_values.shape[:-1]), "q_values.shape[:-1]")
    if munchausen_coef == 0.0:
        return rewards
    log_probs = boltzmann_log_probs(q_values, ent_coef, log_prior)
    action_log_probs = _gather_actions(log_probs, _action_index(actions, q_values.shape[-1]))
    return rewards + munchausen_coef * (ent_coef * action_log_probs).clamp(min=munchausen_clip)
