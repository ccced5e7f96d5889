"""
The pure functions and the sequence replay buffer on a CUDA device give what they give on the CPU. Skipped where no
CUDA device is present (``benchmarks/gpu_check.sh`` runs them on a GPU machine).
"""

import math

import numpy as np
import pytest
import torch as th
from test_returns import make_inputs
from test_sequence_buffer import create_buffer, fill_buffer

from sb3_softq.common.returns import (
    general_off_policy_returns,
    munchausen_rewards,
    soft_lambda_returns_with_extras,
    trace_diagnostics,
)
from sb3_softq.common.soft import boltzmann_log_probs, entropy, soft_value
from sb3_softq.common.traces import TRACES

pytestmark = pytest.mark.skipif(not th.cuda.is_available(), reason="needs a CUDA device")


def to_cuda(inputs):
    return {key: value.cuda() for key, value in inputs.items()}


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("n_steps", [1, 8, 64])  # the reverse loop and the doubling scan
@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_returns_on_cuda_equal_cpu(trace, n_steps, dtype):
    inputs = make_inputs(16, n_steps, n_actions=4, dtype=dtype, seed=n_steps, prior=True)
    kwargs = dict(gamma=0.99, trace_lambda=0.9, trace=trace)
    expected = soft_lambda_returns_with_extras(**inputs, **kwargs, ent_coef=0.2)
    result = soft_lambda_returns_with_extras(**to_cuda(inputs), **kwargs, ent_coef=th.tensor(0.2, dtype=dtype).cuda())
    assert result.returns.device.type == "cuda" and result.returns.dtype == dtype
    tolerance = dict(rtol=1e-5, atol=1e-5) if dtype == th.float32 else dict(rtol=1e-10, atol=1e-10)
    th.testing.assert_close(result.returns.cpu(), expected.returns, **tolerance)
    th.testing.assert_close(result.trace_coefs.cpu(), expected.trace_coefs, **tolerance)

    stats = trace_diagnostics(result.trace_coefs, inputs["continues"].cuda())
    expected_stats = trace_diagnostics(expected.trace_coefs, inputs["continues"])
    for key, value in stats.items():
        assert value.device.type == "cuda" and value.shape == ()
        assert float(value) == pytest.approx(float(expected_stats[key]), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("n_steps", [8, 64])
def test_non_finite_values_stay_in_their_episode_on_cuda(n_steps):
    """Padding with mu = 0 (ratio inf), NaN rewards and -inf action values after the first cut change nothing before it."""
    inputs = make_inputs(8, n_steps, n_actions=3, dtype=th.float32, seed=3, p_cut=0.1)
    cut = ~inputs["continues"]
    cut[:, -1] = True
    after = th.arange(n_steps) > cut.int().argmax(dim=1, keepdim=True)
    bad = dict(inputs)
    bad["rewards"] = inputs["rewards"].masked_fill(after, math.nan)
    bad["next_q_values"] = inputs["next_q_values"].masked_fill(after.unsqueeze(-1), -math.inf)
    bad["next_behaviour_probs"] = inputs["next_behaviour_probs"].masked_fill(after, 0.0)
    kwargs = dict(gamma=0.9, trace_lambda=1.0, ent_coef=0.5, trace="importance_sampling")
    expected = soft_lambda_returns_with_extras(**inputs, **kwargs).returns
    returns = soft_lambda_returns_with_extras(**to_cuda(bad), **kwargs).returns.cpu()
    assert th.isfinite(returns[~after]).all()
    th.testing.assert_close(returns[~after], expected[~after], rtol=1e-5, atol=1e-5)


def test_general_returns_and_soft_functions_on_cuda():
    gen = th.Generator().manual_seed(0)
    args = [th.randn(4, 9, generator=gen) for _ in range(4)] + [th.full((4, 9), 0.9), th.rand(4, 9, generator=gen) > 0.2]
    expected = general_off_policy_returns(*args)
    th.testing.assert_close(general_off_policy_returns(*(x.cuda() for x in args)).cpu(), expected)
    q = 3 * th.randn(5, 6, generator=gen)
    for function in (soft_value, boltzmann_log_probs):
        th.testing.assert_close(function(q.cuda(), 0.3).cpu(), function(q, 0.3))
    th.testing.assert_close(entropy(boltzmann_log_probs(q.cuda(), 0.3)).cpu(), entropy(boltzmann_log_probs(q, 0.3)))
    actions = th.randint(6, (5,), generator=gen)
    rewards = th.randn(5, generator=gen)
    th.testing.assert_close(
        munchausen_rewards(rewards.cuda(), q.cuda(), actions.cuda(), 0.3, 0.9).cpu(),
        munchausen_rewards(rewards, q, actions, 0.3, 0.9),
    )


@pytest.mark.parametrize("dict_obs", [False, True])
def test_buffer_samples_onto_cuda(dict_obs):
    """The same windows as a CPU buffer (same random draws), as tensors on the CUDA device."""
    from test_sequence_buffer import dict_obs as make_dict_obs

    buffers = {}
    for device in ("cpu", "cuda"):
        buffer = create_buffer(buffer_size=12, sequence_length=4, n_envs=2, dict_obs=dict_obs)
        buffer.device = th.device(device)
        kwargs = dict(make_obs=make_dict_obs) if dict_obs else {}
        fill_buffer(buffer, 30, done_at=(3, 11, 20), truncated_at=(7, 25), n_envs=2, **kwargs)
        buffers[device] = buffer
    np.random.seed(0)
    expected = buffers["cpu"].sample(16)
    np.random.seed(0)
    samples = buffers["cuda"].sample(16)
    for field, value in samples._asdict().items():
        values = value.values() if isinstance(value, dict) else [value]
        reference = expected._asdict()[field]
        references = reference.values() if isinstance(reference, dict) else [reference]
        for got, want in zip(values, references, strict=True):
            assert got.device.type == "cuda", field
            th.testing.assert_close(got.cpu(), want, equal_nan=True, msg=field)
