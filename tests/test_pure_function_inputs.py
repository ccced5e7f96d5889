"""
Bad inputs to the pure functions of ``sb3_softq.common.returns`` and ``sb3_softq.common.soft``: a ValueError or
TypeError naming the parameter, never an IndexError, AttributeError or a math domain error.
"""

import math

import numpy as np
import pytest
import torch as th

from sb3_softq.common.returns import (
    general_off_policy_returns,
    munchausen_rewards,
    soft_lambda_returns,
    soft_lambda_returns_with_extras,
    soft_trace_coefficients,
    trace_diagnostics,
)
from sb3_softq.common.soft import boltzmann_log_probs, boltzmann_logits, entropy, kl_divergence, soft_value


def window(batch_size=2, n_steps=3, n_actions=3, dtype=th.float32):
    gen = th.Generator().manual_seed(0)
    return dict(
        rewards=th.randn(batch_size, n_steps, generator=gen).to(dtype),
        next_q_values=th.randn(batch_size, n_steps, n_actions, generator=gen).to(dtype),
        next_actions=th.randint(max(n_actions, 1), (batch_size, n_steps), generator=gen),
        terminated=th.zeros(batch_size, n_steps, dtype=th.bool),
        continues=th.ones(batch_size, n_steps, dtype=th.bool),
    )


KWARGS = dict(gamma=0.9, trace_lambda=0.5, ent_coef=0.1)


def call_returns(**changes):
    inputs = {**window(), **KWARGS}
    inputs.update(changes)
    return soft_lambda_returns(**inputs)


@pytest.mark.parametrize("name", ["rewards", "next_q_values", "next_actions", "terminated", "continues"])
@pytest.mark.parametrize("convert", [lambda x: x.numpy(), lambda x: x.tolist()], ids=["numpy", "list"])
def test_arrays_and_lists_are_refused_by_name(name, convert):
    with pytest.raises(TypeError, match=rf"`{name}` must be a torch.Tensor"):
        call_returns(**{name: convert(window()[name])})


def test_empty_time_and_no_actions():
    with pytest.raises(ValueError, match=r"next_q_values.*time >= 1"):
        soft_lambda_returns(**window(n_steps=0), **KWARGS)
    with pytest.raises(ValueError, match=r"next_q_values.*n_actions >= 1"):
        soft_lambda_returns(**window(n_actions=0), **KWARGS)
    with pytest.raises(ValueError, match=r"rewards.*time >= 1"):
        general_off_policy_returns(*(th.zeros(2, 0) for _ in range(6)))
    with pytest.raises(ValueError, match=r"trace_coefs.*time >= 1"):
        trace_diagnostics(th.zeros(2, 0), th.zeros(2, 0))
    with pytest.raises(ValueError, match=r"q_values.*n_actions >= 1"):
        munchausen_rewards(th.zeros(2), th.zeros(2, 0), th.zeros(2, dtype=th.long), 0.1, 0.9)
    for function in (soft_value, boltzmann_log_probs, boltzmann_logits):
        with pytest.raises(ValueError, match=r"`q`.*n_actions >= 1"):
            function(th.zeros(3, 0), 0.1)
    for function in (entropy, kl_divergence):
        with pytest.raises(ValueError, match=r"log_probs.*n_actions >= 1"):
            function(th.zeros(3, 0))


def test_empty_batch_is_fine():
    returns = soft_lambda_returns(**window(batch_size=0), **KWARGS)
    assert returns.shape == (0, 3)
    stats = trace_diagnostics(th.zeros(0, 3), th.zeros(0, 3))
    assert all(float(value) == 0.0 for value in stats.values())


@pytest.mark.parametrize(
    "ent_coef, error",
    [
        (math.inf, ValueError),
        (math.nan, ValueError),
        (0.0, ValueError),
        (-0.5, ValueError),
        ("0.1", TypeError),
        (True, TypeError),
        (None, TypeError),
        (th.ones(2), ValueError),
        (th.tensor(1), TypeError),
    ],
)
def test_bad_temperatures_are_refused_by_name(ent_coef, error):
    with pytest.raises(error, match="ent_coef"):
        call_returns(ent_coef=ent_coef)
    with pytest.raises(error, match="ent_coef"):
        soft_trace_coefficients(window()["next_q_values"], window()["next_actions"], 0.5, ent_coef)
    with pytest.raises(error, match="ent_coef"):
        munchausen_rewards(th.zeros(2), th.zeros(2, 3), th.zeros(2, dtype=th.long), ent_coef, 0.9)
    if not isinstance(ent_coef, th.Tensor):  # soft.py also takes one temperature per state
        for function in (soft_value, boltzmann_log_probs, boltzmann_logits):
            with pytest.raises(error, match="ent_coef"):
                function(th.zeros(2, 3), ent_coef)


@pytest.mark.parametrize(
    "dtype, ent_coef", [(th.float32, 1e-60), (th.float32, 1e39), (th.float16, 1e-6), (th.float16, 1e5), (th.float64, 1e-320)]
)
def test_temperature_out_of_the_dtype_range(dtype, ent_coef):
    with pytest.raises(ValueError, match=rf"ent_coef.*underflows or overflows in {dtype}"):
        soft_lambda_returns(**window(dtype=dtype), **{**KWARGS, "ent_coef": ent_coef})
    with pytest.raises(ValueError, match=r"ent_coef.*underflows or overflows"):
        soft_value(th.zeros(2, 3, dtype=dtype), ent_coef)
    # the same temperature is fine in float64 (when it fits there)
    if dtype != th.float64:
        assert th.isfinite(soft_lambda_returns(**window(dtype=th.float64), **{**KWARGS, "ent_coef": ent_coef})).all()


def test_tensor_temperature_is_not_read():
    """A 0-d tensor temperature is accepted without reading its value (that would synchronise with the device)."""
    inputs = window()
    returns = soft_lambda_returns(**inputs, **{**KWARGS, "ent_coef": th.tensor(0.1)})
    th.testing.assert_close(returns, soft_lambda_returns(**inputs, **KWARGS))


@pytest.mark.parametrize("name", ["gamma", "trace_lambda"])
@pytest.mark.parametrize(
    "value, error",
    [(math.nan, ValueError), (-0.1, ValueError), (1.5, ValueError), ("0.9", TypeError), (True, TypeError), (None, TypeError)],
)
def test_bad_gamma_and_lambda_are_refused_by_name(name, value, error):
    with pytest.raises(error, match=name):
        call_returns(**{name: value})
    if name == "trace_lambda":
        with pytest.raises(error, match=name):
            soft_trace_coefficients(window()["next_q_values"], window()["next_actions"], value, 0.1)


def test_numpy_numbers_are_accepted():
    returns = call_returns(gamma=np.float32(0.9), trace_lambda=np.float64(0.5), ent_coef=np.float32(0.1))
    th.testing.assert_close(returns, call_returns())
    assert th.isfinite(call_returns(gamma=1, trace_lambda=0, ent_coef=1)).all()


@pytest.mark.parametrize("dtype", [th.float32, th.bool])
def test_non_integer_actions_are_refused_by_name(dtype):
    actions = window()["next_actions"].to(dtype)
    with pytest.raises(TypeError, match=r"next_actions.*integer"):
        call_returns(next_actions=actions)
    with pytest.raises(TypeError, match=r"actions.*integer"):
        munchausen_rewards(th.zeros(2, 3), th.zeros(2, 3, 4), actions, 0.1, 0.9)


def test_integer_action_values_are_refused_by_name():
    with pytest.raises(TypeError, match=r"next_q_values.*floating"):
        call_returns(next_q_values=th.zeros(2, 3, 3, dtype=th.long))
    with pytest.raises(TypeError, match=r"`q`.*floating"):
        soft_value(th.zeros(2, 3, dtype=th.long), 0.1)


def test_unknown_trace_and_missing_behaviour_probs():
    with pytest.raises(ValueError, match=r"Unknown `trace` 'watkins': allowed values are 'tree_backup'"):
        call_returns(trace="watkins")
    with pytest.raises(ValueError, match=r"Unknown `trace` 3"):
        call_returns(trace=3)
    with pytest.raises(ValueError, match="needs `next_behaviour_probs`"):
        call_returns(trace="retrace")
    with pytest.raises(TypeError, match=r"`next_behaviour_probs` must be a torch.Tensor"):
        call_returns(trace="retrace", next_behaviour_probs=np.ones((2, 3)))
    extras = soft_lambda_returns_with_extras(**window(), **KWARGS, trace="retrace", next_behaviour_probs=th.ones(2, 3))
    assert extras.returns.shape == extras.trace_coefs.shape == (2, 3)


def test_general_returns_and_diagnostics_refuse_non_tensors():
    with pytest.raises(TypeError, match=r"`rewards` must be a torch.Tensor"):
        general_off_policy_returns(np.zeros((2, 3)), *(th.zeros(2, 3) for _ in range(5)))
    with pytest.raises(TypeError, match=r"`discounts` must be a torch.Tensor"):
        general_off_policy_returns(*(th.zeros(2, 3) for _ in range(4)), [[0.9] * 3] * 2, th.ones(2, 3))
    with pytest.raises(TypeError, match=r"`valid` must be a torch.Tensor"):
        trace_diagnostics(th.zeros(2, 3), th.ones(2, 3), np.ones((2, 3)))
    for function in (soft_value, boltzmann_log_probs):
        with pytest.raises(TypeError, match=r"`q` must be a torch.Tensor"):
            function(np.zeros((2, 3)), 0.1)
    with pytest.raises(TypeError, match=r"`log_probs` must be a torch.Tensor"):
        entropy([0.0, 0.0])
