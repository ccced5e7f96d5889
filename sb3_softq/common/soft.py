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

import torch as th


def uniform_log_prior(q: th.Tensor) -> float:
    """
    The log-probability of every action under the uniform reference policy.

    :param q: action values ``[..., n_actions]``
    :return: :math:`-\\log |A|` (a float, broadcast against any tensor)
    """
    return -math.log(q.shape[-1])


def boltzmann_logits(q: th.Tensor, ent_coef: float | th.Tensor, log_prior: th.Tensor | None = None) -> th.Tensor:
    """
    Unnormalised log-probabilities of the Boltzmann policy, :math:`Q(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s)`.

    :param q: action values ``[..., n_actions]``
    :param ent_coef: temperature :math:`\\tau > 0`, a float or a tensor broadcastable to ``[...]``
    :param log_prior: :math:`\\log\\bar\\pi(\\cdot|s)`, broadcastable to ``q``; ``None`` for uniform
    :return: logits ``[..., n_actions]``
    """
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
    probs = log_probs.exp()
    prior: th.Tensor | float = uniform_log_prior(log_probs) if log_prior is None else log_prior
    # Where pi(a) = 0 the term is 0, whatever log pi(a) is (-inf included).
    terms = th.where(probs > 0, probs * (log_probs - prior), th.zeros_like(probs))
    return terms.sum(dim=-1)
