"""
The soft (entropy-regularised) Bellman core, as pure functions on the last (action) dimension.

Notation (Schulman et al. 2017, "Equivalence between policy gradients and soft Q-learning", and the Soft Q(λ)
paper §2.2): temperature :math:`\\tau > 0` (``ent_coef``), reference policy :math:`\\bar\\pi(a|s)`
(``log_prior``, uniform when ``None``), action values :math:`Q(s, \\cdot)` (``q``).

- soft value :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)`
- Boltzmann policy :math:`\\pi_B(a|s) = \\bar\\pi(a|s) \\exp((Q(s,a) - V(s))/\\tau)
  = \\mathrm{softmax}(Q(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s))`
- identity :math:`V(s) = \\mathbb{E}_{a\\sim\\pi_B}[Q(s,a)] - \\tau\\,\\mathrm{KL}(\\pi_B \\| \\bar\\pi)`

Every function goes through ``logsumexp`` (which subtracts the maximum internally), so that it stays finite for
temperatures from ``1e-4`` to ``1e3`` and ``|Q|`` up to ``1e4`` in float32, and tends to the hard ``max`` / one-hot
``argmax`` as :math:`\\tau \\to 0`.
"""

import math
import numbers

import torch as th


def _check_temperature(name: str, ent_coef: object, dtype: th.dtype | None = None, *, scalar_tensor: bool = False) -> None:
    """
    Check a temperature :math:`\\tau` given as ``name``, without reading a tensor's value (that would synchronise
    with the device).

    :param name: the parameter's name, for the error message
    :param ent_coef: a real number, finite and > 0, representable in ``dtype`` (at least ``th.finfo(dtype).tiny``,
        at most ``th.finfo(dtype).max``, so that neither :math:`\\tau` nor :math:`1/\\tau` is 0 or inf there);
        or a floating tensor (0-d when ``scalar_tensor``)
    :param dtype: the floating dtype of the action values, or ``None`` to skip the range check
    :param scalar_tensor: whether a tensor must be 0-d
    :raises TypeError: for a bool, a string or any other non-number, or a non-floating tensor
    :raises ValueError: for a value out of range, or a tensor of the wrong shape
    """
    if isinstance(ent_coef, th.Tensor):
        if scalar_tensor and ent_coef.dim() != 0:
            raise ValueError(f"`{name}` must be a float or a 0-d tensor, got a tensor of shape {tuple(ent_coef.shape)}")
        if not ent_coef.is_floating_point():
            raise TypeError(f"`{name}` must be a floating tensor, got dtype {ent_coef.dtype}")
        return
    if isinstance(ent_coef, bool) or not isinstance(ent_coef, numbers.Real):
        raise TypeError(
            f"`{name}` (the temperature tau) must be a real number > 0 or a tensor, got {ent_coef!r} "
            f"of type {type(ent_coef).__name__}"
        )
    value = float(ent_coef)
    if not (math.isfinite(value) and value > 0.0):
        raise ValueError(f"`{name}` (the temperature tau) must be a finite number > 0, got {ent_coef}")
    if dtype is not None and dtype.is_floating_point:
        info = th.finfo(dtype)
        if value < info.tiny or value > info.max or 1.0 / value > info.max:
            raise ValueError(
                f"`{name}` = {ent_coef} underflows or overflows in {dtype} (Q / tau would be inf or NaN): it must lie in "
                f"[{info.tiny:.3g}, {info.max:.3g}], or compute in a wider dtype"
            )


def _check_q(name: str, q: object) -> th.Tensor:
    """:return: ``q``, checked to be a floating tensor ``[..., n_actions]`` with ``n_actions >= 1``."""
    if not isinstance(q, th.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor, got {type(q).__name__} (convert it with torch.as_tensor)")
    if q.dim() < 1 or q.shape[-1] < 1:
        raise ValueError(f"`{name}` must have shape [..., n_actions] with n_actions >= 1, got {tuple(q.shape)}")
    if not q.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor, got dtype {q.dtype}")
    return q


def uniform_log_prior(q: th.Tensor) -> float:
    """
    The log-probability of every action under the uniform reference policy.

    :param q: action values ``[..., n_actions]``
    :return: :math:`-\\log |A|` (a float, broadcast against any tensor)
    """
    if not isinstance(q, th.Tensor) or q.dim() < 1 or q.shape[-1] < 1:
        raise ValueError(f"`q` must be a tensor of shape [..., n_actions] with n_actions >= 1, got {q!r:.80}")
    return -math.log(q.shape[-1])


def boltzmann_logits(q: th.Tensor, ent_coef: float | th.Tensor, log_prior: th.Tensor | None = None) -> th.Tensor:
    """
    Unnormalised log-probabilities of the Boltzmann policy, :math:`Q(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s)`.

    :param q: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`, a float or a tensor broadcastable to ``[...]``
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q``; ``None`` for uniform
    :return: logits ``[..., n_actions]``
    :raises TypeError, ValueError: naming ``q`` or ``ent_coef`` for inputs of the wrong type, shape or range
    """
    _check_q("q", q)
    _check_temperature("ent_coef", ent_coef, q.dtype)
    if isinstance(ent_coef, th.Tensor) and ent_coef.dim() > 0:  # one temperature per state: broadcast over actions
        ent_coef = ent_coef.unsqueeze(-1)
    return q / ent_coef + (uniform_log_prior(q) if log_prior is None else log_prior)


def soft_value(q: th.Tensor, ent_coef: float | th.Tensor, log_prior: th.Tensor | None = None) -> th.Tensor:
    """
    Soft state value :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)`.

    Computed as :math:`\\tau \\cdot \\mathrm{logsumexp}(Q/\\tau + \\log\\bar\\pi)`, which never overflows. With a
    uniform prior this is :math:`\\tau\\,\\mathrm{logsumexp}(Q/\\tau) - \\tau\\log|A|`.

    :param q: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`, a float or a tensor broadcastable to ``[...]``
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q``; ``None`` for uniform
    :return: soft values ``[...]``
    """
    return ent_coef * th.logsumexp(boltzmann_logits(q, ent_coef, log_prior), dim=-1)


def boltzmann_log_probs(q: th.Tensor, ent_coef: float | th.Tensor, log_prior: th.Tensor | None = None) -> th.Tensor:
    """
    Log-probabilities of the Boltzmann policy
    :math:`\\log\\pi_B(a|s) = \\log\\bar\\pi(a|s) + (Q(s,a) - V(s))/\\tau`.

    :param q: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`, a float or a tensor broadcastable to ``[...]``
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q``; ``None`` for uniform
    :return: log-probabilities ``[..., n_actions]`` (normalised: they log-sum-exp to 0)
    """
    logits = boltzmann_logits(q, ent_coef, log_prior)
    # Same as log_softmax, and faster on CPU for the few actions of typical discrete action spaces
    return logits - th.logsumexp(logits, dim=-1, keepdim=True)


def entropy(log_probs: th.Tensor) -> th.Tensor:
    """
    Entropy :math:`H(\\pi) = -\\sum_a \\pi(a) \\log\\pi(a)` of a categorical distribution given by its log-probabilities.

    :param log_probs: normalised log-probabilities ``[..., n_actions]`` (``-inf`` allowed)
    :return: entropies ``[...]``
    """
    _check_q("log_probs", log_probs)
    probs = log_probs.exp()
    # 0 * log 0 = 0, also where log pi(a) = -inf
    return -th.where(probs > 0, probs * log_probs, th.zeros_like(probs)).sum(dim=-1)


def kl_divergence(log_probs: th.Tensor, log_prior: th.Tensor | None = None) -> th.Tensor:
    """
    :math:`\\mathrm{KL}(\\pi \\| \\bar\\pi) = \\sum_a \\pi(a) (\\log\\pi(a) - \\log\\bar\\pi(a))`.

    :param log_probs: normalised log-probabilities of :math:`\\pi`, ``[..., n_actions]``
    :param log_prior: :math:`\\log\\bar\\pi`, broadcastable to ``log_probs``; ``None`` for uniform
    :return: divergences ``[...]`` (non-negative up to rounding)
    """
    _check_q("log_probs", log_probs)
    probs = log_probs.exp()
    prior: th.Tensor | float = uniform_log_prior(log_probs) if log_prior is None else log_prior
    # Where pi(a) = 0 the term is 0, whatever log pi(a) is (-inf included).
    terms = th.where(probs > 0, probs * (log_probs - prior), th.zeros_like(probs))
    return terms.sum(dim=-1)
