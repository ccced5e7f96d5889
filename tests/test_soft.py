import math

import pytest
import torch as th

from sb3_softq.common.soft import boltzmann_log_probs, entropy, kl_divergence, soft_value

TEMPERATURES = [1e-4, 1e-2, 1.0, 1e3]


def random_log_prior(shape: tuple[int, ...], generator: th.Generator) -> th.Tensor:
    return th.log_softmax(th.randn(shape, generator=generator, dtype=th.float64), dim=-1)


@pytest.mark.parametrize("ent_coef", [1e-3, 0.1, 1.0, 10.0])
@pytest.mark.parametrize("uniform", [True, False])
def test_value_is_expected_q_minus_kl(ent_coef: float, uniform: bool) -> None:
    """V(s) = E_{a~pi_B}[Q(s,a)] - tau * KL(pi_B || pibar)  (paper eq. 5/9)."""
    generator = th.Generator().manual_seed(0)
    q_values = 3 * th.randn(64, 5, generator=generator, dtype=th.float64)
    log_prior = None if uniform else random_log_prior((64, 5), generator)
    log_probs = boltzmann_log_probs(q_values, ent_coef, log_prior)
    expected_q = (log_probs.exp() * q_values).sum(dim=-1)
    th.testing.assert_close(
        soft_value(q_values, ent_coef, log_prior), expected_q - ent_coef * kl_divergence(log_probs, log_prior)
    )


@pytest.mark.parametrize("ent_coef", TEMPERATURES)
def test_uniform_prior_closed_form(ent_coef: float) -> None:
    """With a uniform prior, V = tau * logsumexp(Q / tau) - tau * log|A|."""
    q_values = th.randn(32, 4, generator=th.Generator().manual_seed(1), dtype=th.float64)
    expected = ent_coef * th.logsumexp(q_values / ent_coef, dim=-1) - ent_coef * math.log(4)
    th.testing.assert_close(soft_value(q_values, ent_coef), expected)
    th.testing.assert_close(soft_value(q_values, ent_coef, th.full((4,), -math.log(4), dtype=th.float64)), expected)


def test_boltzmann_policy_definition() -> None:
    """pi_B(a|s) = pibar(a|s) exp((Q(s,a) - V(s)) / tau), and it is normalised."""
    generator = th.Generator().manual_seed(2)
    q_values = th.randn(16, 6, generator=generator, dtype=th.float64)
    log_prior = random_log_prior((16, 6), generator)
    ent_coef = 0.3
    log_probs = boltzmann_log_probs(q_values, ent_coef, log_prior)
    expected = log_prior + (q_values - soft_value(q_values, ent_coef, log_prior)[:, None]) / ent_coef
    th.testing.assert_close(log_probs, expected)
    th.testing.assert_close(log_probs.exp().sum(dim=-1), th.ones(16, dtype=th.float64))


def test_zero_temperature_limit_is_hard_max() -> None:
    """tau -> 0 gives max_a Q and a one-hot argmax policy (distinct Q-values)."""
    q_values = th.tensor([[1.0, 3.0, 2.0], [-5.0, -7.0, -6.0]], dtype=th.float64)
    previous_gap = math.inf
    for ent_coef in [1.0, 0.1, 0.01, 1e-4]:
        gap = (soft_value(q_values, ent_coef) - q_values.amax(dim=-1)).abs().max().item()
        assert gap <= previous_gap + 1e-12
        previous_gap = gap
    th.testing.assert_close(soft_value(q_values, 1e-4), q_values.amax(dim=-1), atol=2e-4, rtol=0)
    one_hot = th.nn.functional.one_hot(q_values.argmax(dim=-1), 3).to(th.float64)
    th.testing.assert_close(boltzmann_log_probs(q_values, 1e-4).exp(), one_hot)
    assert entropy(boltzmann_log_probs(q_values, 1e-4)).abs().max().item() < 1e-8


def test_high_temperature_limit_is_prior() -> None:
    """tau -> infinity gives pi_B = pibar and V = E_pibar[Q]."""
    generator = th.Generator().manual_seed(3)
    q_values = th.randn(8, 4, generator=generator, dtype=th.float64)
    log_prior = random_log_prior((8, 4), generator)
    th.testing.assert_close(boltzmann_log_probs(q_values, 1e6, log_prior), log_prior, atol=1e-5, rtol=0)
    th.testing.assert_close(soft_value(q_values, 1e6, log_prior), (log_prior.exp() * q_values).sum(-1), atol=1e-5, rtol=0)


@pytest.mark.parametrize("ent_coef", TEMPERATURES)
@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_finite_at_extremes(ent_coef: float, scale: float) -> None:
    """No NaN/inf for tau in [1e-4, 1e3] and |Q| up to 1e4, in float32."""
    generator = th.Generator().manual_seed(4)
    q_values = scale * (2 * th.rand(256, 7, generator=generator) - 1)
    log_prior = th.log_softmax(th.randn(256, 7, generator=generator), dim=-1)
    for prior in (None, log_prior):
        log_probs = boltzmann_log_probs(q_values, ent_coef, prior)
        values = soft_value(q_values, ent_coef, prior)
        for tensor in (log_probs, values, entropy(log_probs), kl_divergence(log_probs, prior)):
            assert th.isfinite(tensor).all()
        # V lies between min and max of Q + tau * log pibar terms: for the uniform prior, in [max Q - tau log|A|, max Q]
        if prior is None:
            assert (values <= q_values.amax(-1) + 1e-3 * scale).all()
            assert (values >= q_values.amax(-1) - ent_coef * math.log(7) - 1e-3 * scale).all()
        assert (entropy(log_probs) >= -1e-5).all() and (entropy(log_probs) <= math.log(7) + 1e-5).all()
        assert (kl_divergence(log_probs, prior) >= -1e-4).all()


def test_tensor_temperature() -> None:
    """The temperature may be a 0-d tensor (learned) or one per state."""
    q_values = th.randn(5, 3, dtype=th.float64)
    th.testing.assert_close(soft_value(q_values, th.tensor(0.5, dtype=th.float64)), soft_value(q_values, 0.5))
    per_state = th.tensor([0.1, 0.2, 0.3, 0.4, 0.5], dtype=th.float64)
    expected = th.stack([soft_value(q_values[i], float(per_state[i])) for i in range(5)])
    th.testing.assert_close(soft_value(q_values, per_state), expected)


def test_entropy_and_kl_of_uniform() -> None:
    log_uniform = th.full((2, 4), -math.log(4))
    th.testing.assert_close(entropy(log_uniform), th.full((2,), math.log(4)))
    th.testing.assert_close(kl_divergence(log_uniform), th.zeros(2), atol=1e-7, rtol=0)
    # A deterministic policy: entropy 0, KL to uniform = log|A| (with -inf log-probabilities)
    log_one_hot = th.log(th.tensor([[1.0, 0.0, 0.0, 0.0]]))
    th.testing.assert_close(entropy(log_one_hot), th.zeros(1))
    th.testing.assert_close(kl_divergence(log_one_hot), th.full((1,), math.log(4)))
