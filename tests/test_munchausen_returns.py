"""The Munchausen term of the returns (SPEC §3b): its loop twin, its identities and its argument checks."""

import math

import numpy as np
import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st

from sb3_softq.common.returns import check_munchausen, munchausen_rewards


def munchausen_rewards_loop(rewards, q_values, actions, ent_coef, munchausen_coef, munchausen_clip=-1.0, log_prior=None):
    """The slow, obvious twin: one state at a time, in float64, from the definition of the Boltzmann policy."""
    flat_rewards = rewards.reshape(-1).tolist()
    flat_q = q_values.reshape(-1, q_values.shape[-1]).double()
    flat_actions = actions.reshape(-1).tolist()
    flat_prior = None if log_prior is None else log_prior.expand_as(q_values).reshape(-1, q_values.shape[-1]).double()
    out = []
    for i, reward in enumerate(flat_rewards):
        n_actions = flat_q.shape[-1]
        prior = [-math.log(n_actions)] * n_actions if flat_prior is None else flat_prior[i].tolist()
        logits = [flat_q[i, a].item() / ent_coef + prior[a] for a in range(n_actions)]
        top = max(logits)
        log_z = top + math.log(sum(math.exp(x - top) for x in logits))
        log_pi = logits[flat_actions[i]] - log_z
        out.append(reward + munchausen_coef * max(ent_coef * log_pi, munchausen_clip))
    return th.tensor(out, dtype=th.float64).reshape(rewards.shape)


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
@pytest.mark.parametrize("with_prior", [False, True])
def test_window_bonus_equals_its_loop_twin(shape, with_prior):
    gen = th.Generator().manual_seed(0)
    n_actions = 4
    rewards = th.randn(shape, generator=gen)
    q_values = 3 * th.randn((*shape, n_actions), generator=gen)
    actions = th.randint(n_actions, shape, generator=gen)
    log_prior = th.log_softmax(th.randn((*shape, n_actions), generator=gen), dim=-1) if with_prior else None
    for ent_coef, coef, clip in [(0.5, 0.9, -1.0), (0.05, 1.0, -0.3), (2.0, 0.3, -10.0)]:
        got = munchausen_rewards(rewards, q_values, actions, ent_coef, coef, clip, log_prior=log_prior)
        expected = munchausen_rewards_loop(rewards, q_values, actions, ent_coef, coef, clip, log_prior=log_prior)
        assert got.shape == rewards.shape
        np.testing.assert_allclose(got.double().numpy(), expected.numpy(), rtol=1e-5, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(
    batch=st.integers(1, 6),
    n_actions=st.integers(1, 5),
    ent_coef=st.floats(1e-3, 1e2),
    coef=st.floats(0.0, 1.0),
    clip=st.floats(-50.0, -1e-3),
    seed=st.integers(0, 2**16),
)
def test_bonus_is_clipped_from_below_and_never_positive(batch, n_actions, ent_coef, coef, clip, seed):
    gen = th.Generator().manual_seed(seed)
    rewards = th.zeros(batch, dtype=th.float64)
    q_values = 10 * th.randn((batch, n_actions), generator=gen, dtype=th.float64)
    actions = th.randint(n_actions, (batch,), generator=gen)
    bonus = munchausen_rewards(rewards, q_values, actions, ent_coef, coef, clip)
    # tau * log pi_B <= 0, so the clip acts only from below: the bonus lies in [alpha * l0, 0]
    assert th.all(bonus <= 1e-12)
    assert th.all(bonus >= coef * clip - 1e-9)
    expected = munchausen_rewards_loop(rewards, q_values, actions, ent_coef, coef, clip)
    np.testing.assert_allclose(bonus.numpy(), expected.numpy(), rtol=1e-9, atol=1e-9)


def test_zero_coefficient_returns_the_rewards_themselves():
    rewards = th.randn(3, 4)
    q_values = th.randn(3, 4, 2)
    actions = th.randint(2, (3, 4))
    assert munchausen_rewards(rewards, q_values, actions, 0.7, 0.0) is rewards


def test_single_action_has_no_bonus():
    rewards = th.randn(5)
    out = munchausen_rewards(rewards, th.randn(5, 1), th.zeros(5, dtype=th.long), 0.3, 0.9)
    th.testing.assert_close(out, rewards)


@pytest.mark.parametrize(
    "coef, clip, error",
    [
        (-0.1, -1.0, ValueError),
        (1.5, -1.0, ValueError),
        (math.nan, -1.0, ValueError),
        (0.9, 0.0, ValueError),
        (0.9, 0.5, ValueError),
        (0.9, -math.inf, ValueError),
        (0.9, math.nan, ValueError),
        ("0.9", -1.0, TypeError),
        (True, -1.0, TypeError),
        (0.9, None, TypeError),
    ],
)
def test_bad_values_are_refused_by_name(coef, clip, error):
    name = "munchausen_clip" if coef == 0.9 else "munchausen_coef"
    with pytest.raises(error, match=name):
        check_munchausen(coef, clip)
    with pytest.raises(error, match=name):
        munchausen_rewards(th.zeros(2), th.zeros(2, 3), th.zeros(2, dtype=th.long), 1.0, coef, clip)


def test_numpy_numbers_are_accepted():
    assert check_munchausen(np.float32(0.5), np.float64(-2.0)) == (0.5, -2.0)


def test_shapes_are_checked_by_name():
    with pytest.raises(ValueError, match="actions"):
        munchausen_rewards(th.zeros(2), th.zeros(2, 3), th.zeros(3, dtype=th.long), 1.0, 0.9)
    with pytest.raises(ValueError, match="rewards"):
        munchausen_rewards(th.zeros(3), th.zeros(2, 3), th.zeros(2, dtype=th.long), 1.0, 0.9)
