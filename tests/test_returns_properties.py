"""
Property tests (hypothesis) of the multi-step soft returns: the vectorised functions equal their plain loop twins over
random shapes, discounts, traces and cut patterns, and non-finite numbers never cross an episode boundary (on every
code path: the reverse loop, the doubling scan and calls that autograd differentiates).
"""

import contextlib
import math

import pytest
import torch as th
from hypothesis import given, settings
from hypothesis import strategies as st
from test_returns import general_off_policy_returns_loop, soft_lambda_returns_loop

from sb3_softq.common import returns as returns_module
from sb3_softq.common.returns import (
    _reverse_recurrence_loop,
    _reverse_recurrence_scan,
    general_off_policy_returns,
    soft_lambda_returns,
    trace_diagnostics,
)
from sb3_softq.common.traces import TRACES

POISONS = (math.nan, math.inf, -math.inf)


@st.composite
def windows(draw, max_steps=12):
    """Random windows: shapes, flags (terminated, truncated, cut, padded tail), gamma, lambda, tau, trace, dtype."""
    batch_size = draw(st.integers(1, 3))
    n_steps = draw(st.integers(1, max_steps))
    n_actions = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    gen = th.Generator().manual_seed(seed)
    flags = th.rand(batch_size, n_steps, generator=gen)
    p_end = draw(st.sampled_from([0.0, 0.2, 0.5]))
    terminated = flags < p_end / 2
    continues = flags >= p_end
    continues[:, -1] = th.rand(batch_size, generator=gen) < 0.5  # ignored
    inputs = dict(
        rewards=th.randn(batch_size, n_steps, generator=gen, dtype=th.float64),
        next_q_values=3 * th.randn(batch_size, n_steps, n_actions, generator=gen, dtype=th.float64),
        next_actions=th.randint(n_actions, (batch_size, n_steps), generator=gen),
        terminated=terminated,
        continues=continues,
        next_behaviour_probs=0.1 + 0.9 * th.rand(batch_size, n_steps, generator=gen, dtype=th.float64),
    )
    if draw(st.booleans()):
        inputs["next_log_prior"] = th.log_softmax(2 * th.randn(batch_size, n_steps, n_actions, generator=gen), -1).double()
    kwargs = dict(
        gamma=draw(st.floats(0.0, 1.0)),
        trace_lambda=draw(st.floats(0.0, 1.0)),
        ent_coef=draw(st.floats(0.05, 5.0)),
        trace=draw(st.sampled_from(TRACES)),
    )
    return inputs, kwargs, gen


def episode_ends(continues):
    """``ends[b][t]``: the last position of the episode (inside the window) that position ``t`` belongs to."""
    batch_size, n_steps = continues.shape
    ends = [[0] * n_steps for _ in range(batch_size)]
    for b in range(batch_size):
        end = n_steps - 1
        for t in reversed(range(n_steps)):
            if t < n_steps - 1 and not bool(continues[b, t]):
                end = t
            ends[b][t] = end
    return ends


@st.composite
def poisoned_windows(draw, max_steps=12):
    """Windows plus a set of positions whose inputs are replaced by NaN / inf (and mu by 0, NaN or inf)."""
    inputs, kwargs, gen = draw(windows(max_steps))
    batch_size, n_steps = inputs["rewards"].shape
    poisoned = th.rand(batch_size, n_steps, generator=gen) < draw(st.sampled_from([0.1, 0.3, 0.6]))
    bad = dict(inputs)
    bad["rewards"] = inputs["rewards"].masked_fill(poisoned, draw(st.sampled_from(POISONS)))
    q_poison = draw(st.sampled_from(POISONS))
    bad["next_q_values"] = inputs["next_q_values"].masked_fill(poisoned.unsqueeze(-1), q_poison)
    bad["next_behaviour_probs"] = inputs["next_behaviour_probs"].masked_fill(poisoned, draw(st.sampled_from((0.0, *POISONS))))
    bad["next_actions"] = inputs["next_actions"].masked_fill(poisoned, draw(st.sampled_from([-7, 0, 1000])))
    return inputs, bad, poisoned, kwargs


def clean_positions(poisoned, continues):
    """Positions t none of whose in-episode inputs (rewards and next Q-values at t..e, next actions and behaviour
    probabilities at t..e-1, e the episode's last position in the window) is poisoned."""
    ends = episode_ends(continues)
    batch_size, n_steps = poisoned.shape
    clean = th.zeros(batch_size, n_steps, dtype=th.bool)
    for b in range(batch_size):
        for t in range(n_steps):
            clean[b, t] = not bool(poisoned[b, t : ends[b][t] + 1].any())
    return clean


def clean_episodes(poisoned, continues):
    """Positions whose whole episode in the window (the run of positions between two cuts) has no poisoned input."""
    cut = ~continues.bool()
    cut[:, -1] = True
    # episode index of each position: the number of cuts strictly before it
    episode = th.cat((th.zeros_like(cut[:, :1], dtype=th.long), cut[:, :-1].long().cumsum(1)), dim=1)
    clean = th.ones_like(cut)
    for b in range(cut.shape[0]):
        for e in episode[b].unique():
            members = episode[b] == e
            clean[b, members] = not bool(poisoned[b, members].any())
    return clean


@contextlib.contextmanager
def solver(name):
    """Run the block on the reverse loop (the default for short windows) or on the doubling scan."""
    original = returns_module.SCAN_MIN_LENGTH
    returns_module.SCAN_MIN_LENGTH = 1 if name == "scan" else 10**9
    try:
        yield
    finally:
        returns_module.SCAN_MIN_LENGTH = original


@settings(max_examples=60, deadline=None)
@given(case=windows())
def test_soft_lambda_returns_equal_loop_twin(case):
    inputs, kwargs, _ = case
    expected = soft_lambda_returns_loop(**inputs, **kwargs)
    for name in ("loop", "scan"):
        with solver(name):
            returns = soft_lambda_returns(**inputs, **kwargs)
        th.testing.assert_close(returns, expected, rtol=1e-9, atol=1e-9 * (1 + expected.abs().max().item()))


@settings(max_examples=60, deadline=None)
@given(case=poisoned_windows())
def test_non_finite_inputs_stay_in_their_episode(case):
    """Finite in-episode inputs give finite returns, equal to the clean ones, whatever the rest of the window holds."""
    inputs, bad, poisoned, kwargs = case
    clean = clean_positions(poisoned, inputs["continues"])
    for name in ("loop", "scan"):
        with solver(name):
            expected = soft_lambda_returns(**inputs, **kwargs)
            returns = soft_lambda_returns(**bad, **kwargs)
        assert th.isfinite(returns[clean]).all()
        th.testing.assert_close(returns[clean], expected[clean], rtol=0, atol=0)


@settings(max_examples=40, deadline=None)
@given(case=poisoned_windows())
def test_non_finite_inputs_stay_in_their_episode_with_autograd(case):
    """The differentiable path (the scan) isolates the episodes too, and so do the gradients of the clean returns."""
    inputs, bad, poisoned, kwargs = case
    clean = clean_positions(poisoned, inputs["continues"])
    kwargs = {**kwargs, "trace": "tree_backup"}
    rewards = bad["rewards"].clone().requires_grad_()
    next_q_values = bad["next_q_values"].clone().requires_grad_()
    returns = soft_lambda_returns(**{**bad, "rewards": rewards, "next_q_values": next_q_values}, **kwargs)
    expected = soft_lambda_returns(**inputs, **kwargs)
    th.testing.assert_close(returns[clean].detach(), expected[clean], rtol=1e-12, atol=1e-12)
    returns[clean].sum().backward()
    # The gradients reaching the inputs of episodes without any poisoned position are finite. (Inside a poisoned
    # episode a NaN coefficient can reach later positions' gradients through 0 * NaN in the backward pass.)
    whole = clean_episodes(poisoned, inputs["continues"])
    assert th.isfinite(rewards.grad[whole]).all() and th.isfinite(next_q_values.grad[whole]).all()


@settings(max_examples=60, deadline=None)
@given(
    batch_size=st.integers(1, 4),
    n_steps=st.integers(1, 70),
    seed=st.integers(0, 2**31 - 1),
    p_zero=st.sampled_from([0.0, 0.2, 0.6]),
    poison=st.sampled_from(POISONS),
)
def test_general_returns_equal_loop_twin_and_isolate_episodes(batch_size, n_steps, seed, p_zero, poison):
    """``general_off_policy_returns`` (both solvers, by window length) equals the loop twin; NaN / inf written into
    every input of the positions after a cut changes nothing before it."""
    gen = th.Generator().manual_seed(seed)
    shape = (batch_size, n_steps)
    rewards, values, action_values = (th.randn(shape, generator=gen, dtype=th.float64) for _ in range(3))
    coefs = 1.2 * th.rand(shape, generator=gen, dtype=th.float64)
    coefs[th.rand(shape, generator=gen) < p_zero] = 0.0
    discounts = 0.95 * (th.rand(shape, generator=gen) > 0.1).double()
    continues = th.rand(shape, generator=gen) > 0.2
    args = (rewards, values, action_values, coefs, discounts, continues)
    expected = general_off_policy_returns_loop(*args)
    th.testing.assert_close(general_off_policy_returns(*args), expected)

    # Poison every input after the first cut of each row (and the cut's own coefficient and action value).
    cut = ~continues
    cut[:, -1] = True
    first_cut = cut.int().argmax(dim=1, keepdim=True)
    position = th.arange(n_steps).expand(shape)
    after = position > first_cut
    at_cut = position == first_cut
    bad = [x.masked_fill(after, poison) for x in (rewards, values, action_values, coefs)]
    bad[2] = bad[2].masked_fill(at_cut, poison)
    bad[3] = bad[3].masked_fill(at_cut, poison)
    before = ~after
    for name in ("loop", "scan"):
        with solver(name):
            returns = general_off_policy_returns(*bad, discounts, continues)
        assert th.isfinite(returns[before]).all()
        th.testing.assert_close(returns[before], expected[before])


@settings(max_examples=60, deadline=None)
@given(batch_size=st.integers(1, 3), n_steps=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_solvers_do_not_read_past_a_cut(batch_size, n_steps, seed):
    """Both solvers of G_k = b_k + a_k G_{k+1}: a zero coefficient ends the sum exactly, NaN / inf beyond it included."""
    gen = th.Generator().manual_seed(seed)
    base = th.randn(batch_size, n_steps, generator=gen, dtype=th.float64)
    coefs = th.rand(batch_size, n_steps, generator=gen, dtype=th.float64)
    coefs *= th.rand(batch_size, n_steps, generator=gen) > 0.3
    expected = general_off_policy_returns_loop(
        base, th.zeros_like(base), th.zeros_like(base), coefs, th.ones_like(base), th.ones_like(base)
    )
    zero = coefs == 0
    zero[:, -1] = True
    first_zero = zero.int().argmax(dim=1, keepdim=True)
    after = th.arange(n_steps).expand(batch_size, n_steps) > first_zero
    bad_base = base.masked_fill(after, math.nan)
    bad_coefs = coefs.masked_fill(after, math.inf)
    for solver in (_reverse_recurrence_loop, _reverse_recurrence_scan):
        th.testing.assert_close(solver(base, coefs), expected)
        returns = solver(bad_base, bad_coefs)
        th.testing.assert_close(returns[~after], expected[~after])


def trace_diagnostics_loop(trace_coefs, continues, valid=None):
    """Plain loops over the definitions of ``trace_diagnostics``."""
    batch_size, n_steps = trace_coefs.shape
    c = trace_coefs.double().tolist()
    cont = continues.bool().tolist()
    ok = [[True] * n_steps for _ in range(batch_size)] if valid is None else valid.bool().tolist()
    coef_sum, n_continuing, n_cut, length_sum, n_valid = 0.0, 0, 0, 0.0, 0
    for b in range(batch_size):
        for t in range(n_steps):
            continuing = t < n_steps - 1 and cont[b][t] and ok[b][t]
            if continuing:
                coef_sum += c[b][t]
                n_continuing += 1
                n_cut += c[b][t] < 0.05
            if ok[b][t]:
                # L_t = sum_{k >= t} prod_{i=t}^{k-1} c_i over continuing steps
                length, product = 0.0, 1.0
                for k in range(t, n_steps):
                    length += product
                    if not (k < n_steps - 1 and cont[b][k] and ok[b][k]):
                        break
                    product *= c[b][k]
                length_sum += length
                n_valid += 1
    return {
        "mean_trace_coef": coef_sum / max(n_continuing, 1),
        "effective_trace_length": length_sum / max(n_valid, 1),
        "cut_fraction": n_cut / max(n_continuing, 1),
    }


@settings(max_examples=60, deadline=None)
@given(
    batch_size=st.integers(0, 3),
    n_steps=st.integers(1, 60),
    seed=st.integers(0, 2**31 - 1),
    with_valid=st.booleans(),
    poison=st.sampled_from(POISONS),
)
def test_trace_diagnostics_equal_loop_twin(batch_size, n_steps, seed, with_valid, poison):
    """Equal to the loop twin, 0-d tensors, and coefficients of steps that do not continue are never read."""
    gen = th.Generator().manual_seed(seed)
    coefs = 1.1 * th.rand(batch_size, n_steps, generator=gen)
    continues = th.rand(batch_size, n_steps, generator=gen) > 0.25
    valid = (th.rand(batch_size, n_steps, generator=gen) > 0.2) if with_valid else None
    expected = trace_diagnostics_loop(coefs, continues, valid)
    ignored = ~continues
    ignored[:, -1] = True
    if valid is not None:
        ignored |= ~valid
    for trace_coefs in (coefs, coefs.masked_fill(ignored, poison)):
        stats = trace_diagnostics(trace_coefs, continues, valid)
        assert set(stats) == set(expected)
        for key, value in stats.items():
            assert isinstance(value, th.Tensor) and value.shape == () and value.dtype == th.float32
            assert float(value) == pytest.approx(expected[key], rel=1e-5, abs=1e-6)
