"""
Tests of the multi-step soft returns (``sb3_softq.common.returns``).

Modelled on rlax's ``multistep_test.py`` (golden values, "reduces to" identities, episode split) and TorchRL's
``test_values.py`` (a plain loop twin as the oracle, compared over a grid of gamma, lambda, lengths and flags).
"""

import math

import pytest
import torch as th
from torch.utils._python_dispatch import TorchDispatchMode

from sb3_softq.common.returns import (
    _reverse_recurrence_loop,
    _reverse_recurrence_scan,
    compiled_soft_lambda_returns,
    general_off_policy_returns,
    soft_lambda_returns,
    soft_lambda_returns_with_extras,
    soft_trace_coefficients,
    trace_diagnostics,
)
from sb3_softq.common.soft import boltzmann_log_probs, soft_value

TRACES = ("tree_backup", "boltzmann", "importance_sampling", "retrace")
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not th.cuda.is_available(), reason="no CUDA"))]


# --------------------------------------------------------------------------------------------------------------
# Loop twins: plain Python double loops over batch and time, written straight from the recursion
#   G_k = r_k + gamma (1 - term_k) [V(s_{k+1}) + c_{k+1} (G_{k+1} - Q(s_{k+1}, a_{k+1}))],
# with the trace cut (c = 0) where continues is 0 and at the last step of the window.
# --------------------------------------------------------------------------------------------------------------


def general_off_policy_returns_loop(rewards, next_values, next_action_values, trace_coefs, discounts, continues):
    r, v, q, c, d, cont = (
        x.double().tolist() for x in (rewards, next_values, next_action_values, trace_coefs, discounts, continues)
    )
    batch_size, n_steps = rewards.shape
    returns = [[0.0] * n_steps for _ in range(batch_size)]
    for b in range(batch_size):
        g_next = 0.0
        for k in reversed(range(n_steps)):
            if k < n_steps - 1 and cont[b][k] != 0:
                g = r[b][k] + d[b][k] * (v[b][k] + c[b][k] * (g_next - q[b][k]))
            else:
                g = r[b][k] + d[b][k] * v[b][k]
            returns[b][k] = g
            g_next = g
    return th.tensor(returns, dtype=th.float64)


def soft_value_loop(q_values, tau, log_prior):
    """V(s) = tau log sum_a prior(a) exp(Q(s,a)/tau), around the max so that it is finite for small tau."""
    q_max = max(q_values)
    return q_max + tau * math.log(sum(math.exp(lp + (q - q_max) / tau) for q, lp in zip(q_values, log_prior, strict=True)))


def boltzmann_prob_loop(q_values, action, tau, log_prior):
    """pi_B(a|s) = softmax(Q(s,.)/tau + log prior)_a."""
    q_max = max(q_values)
    logits = [lp + (q - q_max) / tau for q, lp in zip(q_values, log_prior, strict=True)]
    logit_max = max(logits)
    log_norm = logit_max + math.log(sum(math.exp(x - logit_max) for x in logits))
    return math.exp(logits[action] - log_norm)


def soft_lambda_returns_loop(
    rewards,
    next_q_values,
    next_actions,
    terminated,
    continues,
    gamma,
    trace_lambda,
    ent_coef,
    trace="tree_backup",
    next_log_prior=None,
    next_behaviour_probs=None,
):
    batch_size, n_steps, n_actions = next_q_values.shape
    r = rewards.double().tolist()
    q_next = next_q_values.double().tolist()
    a_next = next_actions.tolist()
    term = terminated.double().tolist()
    cont = continues.double().tolist()
    if next_log_prior is None:
        prior = [[[-math.log(n_actions)] * n_actions] * n_steps] * batch_size
    else:
        prior = next_log_prior.double().tolist()
    mu = None if next_behaviour_probs is None else next_behaviour_probs.double().tolist()
    returns = [[0.0] * n_steps for _ in range(batch_size)]
    for b in range(batch_size):
        g_next = 0.0
        for k in reversed(range(n_steps)):
            value = soft_value_loop(q_next[b][k], ent_coef, prior[b][k])
            discount = gamma * (1.0 - term[b][k])
            if k < n_steps - 1 and cont[b][k] != 0:
                action = a_next[b][k]
                pi = boltzmann_prob_loop(q_next[b][k], action, ent_coef, prior[b][k])
                if trace == "tree_backup":
                    c = trace_lambda * pi
                elif trace == "boltzmann":
                    c = trace_lambda
                elif trace == "importance_sampling":
                    c = trace_lambda * pi / mu[b][k]
                else:
                    c = trace_lambda * min(1.0, pi / mu[b][k])
                g = r[b][k] + discount * (value + c * (g_next - q_next[b][k][action]))
            else:
                g = r[b][k] + discount * value
            returns[b][k] = g
            g_next = g
    return th.tensor(returns, dtype=th.float64)


# --------------------------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------------------------


class _OpCounter(TorchDispatchMode):
    """Counts the ATen operations run inside the ``with`` block."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


def count_torch_ops(function):
    with _OpCounter() as counter:
        function()
    return counter.count


def make_inputs(
    batch_size, n_steps, n_actions=3, dtype=th.float64, seed=0, prior=False, p_terminated=0.1, p_truncated=0.1, p_cut=0.05
):
    """Random windows with terminated / truncated / cut flags; ``continues`` is 0 after every episode end."""
    gen = th.Generator().manual_seed(seed)
    terminated = th.rand(batch_size, n_steps, generator=gen) < p_terminated
    truncated = ~terminated & (th.rand(batch_size, n_steps, generator=gen) < p_truncated)
    cut = th.rand(batch_size, n_steps, generator=gen) < p_cut  # end of the valid part of a window
    continues = ~(terminated | truncated | cut)
    continues[:, -1] = th.rand(batch_size, generator=gen) < 0.5  # ignored by the functions
    inputs = dict(
        rewards=th.randn(batch_size, n_steps, generator=gen, dtype=th.float64).to(dtype),
        next_q_values=th.randn(batch_size, n_steps, n_actions, generator=gen, dtype=th.float64).to(dtype),
        next_actions=th.randint(n_actions, (batch_size, n_steps), generator=gen),
        terminated=terminated,
        continues=continues,
        next_behaviour_probs=(0.2 + 0.8 * th.rand(batch_size, n_steps, generator=gen, dtype=th.float64)).to(dtype),
    )
    if prior:
        logits = 2 * th.randn(batch_size, n_steps, n_actions, generator=gen, dtype=th.float64)
        inputs["next_log_prior"] = th.log_softmax(logits, dim=-1).to(dtype)
    return inputs


def next_policy_probs(inputs, ent_coef):
    """pi_B(a_{k+1}|s_{k+1}) from soft.py, [B, T]."""
    log_probs = boltzmann_log_probs(inputs["next_q_values"], ent_coef, inputs.get("next_log_prior"))
    return log_probs.gather(-1, inputs["next_actions"].unsqueeze(-1)).squeeze(-1).exp()


def tolerances(dtype, reference):
    scale = 1.0 + reference.abs().max().item()
    if dtype == th.float64:
        return dict(rtol=1e-9, atol=1e-9 * scale)
    return dict(rtol=2e-4, atol=2e-4 * scale)


# --------------------------------------------------------------------------------------------------------------
# Vectorised == loop twin
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize("n_steps", [1, 3, 16, 64])
@pytest.mark.parametrize("trace", TRACES)
def test_soft_lambda_returns_match_loop(trace, n_steps, dtype):
    seed = 0
    for gamma in (0.0, 0.9, 1.0):
        for trace_lambda in (0.0, 0.5, 1.0):
            for ent_coef in (1e-3, 0.1, 10.0):
                seed += 1
                inputs = make_inputs(4, n_steps, dtype=dtype, seed=seed, prior=seed % 2 == 0)
                if seed % 3 == 0:
                    inputs["continues"] = inputs["continues"].to(dtype)
                returns = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=trace_lambda, ent_coef=ent_coef, trace=trace)
                expected = soft_lambda_returns_loop(
                    **inputs, gamma=gamma, trace_lambda=trace_lambda, ent_coef=ent_coef, trace=trace
                )
                assert returns.dtype == dtype
                assert returns.shape == (4, n_steps)
                th.testing.assert_close(returns.double(), expected, **tolerances(dtype, expected))


@pytest.mark.parametrize("dtype", [th.float32, th.float64])
@pytest.mark.parametrize("n_steps", [1, 2, 3, 5, 16, 23, 24, 25, 64, 70])
def test_general_off_policy_returns_match_loop(n_steps, dtype):
    gen = th.Generator().manual_seed(n_steps)
    shape = (5, n_steps)
    rewards, next_values, next_action_values = (th.randn(shape, generator=gen).to(dtype) for _ in range(3))
    trace_coefs = th.rand(shape, generator=gen).to(dtype) * 1.2
    trace_coefs[th.rand(shape, generator=gen) < 0.2] = 0.0
    discounts = (0.95 * (th.rand(shape, generator=gen) > 0.1)).to(dtype)
    continues = th.rand(shape, generator=gen) > 0.15
    returns = general_off_policy_returns(rewards, next_values, next_action_values, trace_coefs, discounts, continues)
    expected = general_off_policy_returns_loop(rewards, next_values, next_action_values, trace_coefs, discounts, continues)
    assert returns.dtype == dtype
    th.testing.assert_close(returns.double(), expected, **tolerances(dtype, expected))


@pytest.mark.parametrize("batch_size", [1, 3])
@pytest.mark.parametrize("n_steps", [*range(1, 34), 63, 64, 65, 100])
def test_reverse_recurrence_loop_and_scan_agree(n_steps, batch_size):
    """Both solvers of G_k = b_k + a_k G_{k+1} (the fastest is picked by length), zero coefficients included;
    neither writes into its inputs (the loop works in place on a copy)."""
    gen = th.Generator().manual_seed(n_steps)
    base = th.randn(batch_size, n_steps, generator=gen, dtype=th.float64)
    coefs = th.rand(batch_size, n_steps, generator=gen, dtype=th.float64)
    coefs *= th.rand(batch_size, n_steps, generator=gen) > 0.3
    inputs = (base.clone(), coefs.clone())
    expected = general_off_policy_returns_loop(
        base, th.zeros_like(base), th.zeros_like(base), coefs, th.ones_like(base), th.ones_like(base)
    )
    for solver in (_reverse_recurrence_loop, _reverse_recurrence_scan):
        returns = solver(base, coefs)
        th.testing.assert_close(returns, expected)
        assert returns.is_contiguous()
        th.testing.assert_close((base, coefs), inputs, rtol=0, atol=0)


@pytest.mark.parametrize("n_steps", [1, 5, 16])
def test_general_off_policy_returns_is_differentiable(n_steps):
    """The in-place time loop is for inputs without gradient; inputs that need one get the same values, and
    exact gradients (gradcheck in float64), through the scan."""
    gen = th.Generator().manual_seed(n_steps)
    inputs = [th.randn(2, n_steps, generator=gen, dtype=th.float64) for _ in range(3)]
    trace_coefs = th.rand(2, n_steps, generator=gen, dtype=th.float64)
    discounts = th.full((2, n_steps), 0.9, dtype=th.float64)
    continues = th.rand(2, n_steps, generator=gen) > 0.2
    with th.no_grad():
        expected = general_off_policy_returns(*inputs, trace_coefs, discounts, continues)

    def returns(*differentiable):
        return general_off_policy_returns(*differentiable, discounts, continues)

    differentiable = [tensor.clone().requires_grad_() for tensor in (*inputs, trace_coefs)]
    th.testing.assert_close(returns(*differentiable), expected)
    assert th.autograd.gradcheck(returns, differentiable)


def test_large_batch_matches_loop_and_is_vectorised():
    inputs = make_inputs(1024, 16, n_actions=4, seed=7, prior=True)
    kwargs = dict(gamma=0.99, trace_lambda=0.9, ent_coef=0.1, trace="retrace")
    returns = soft_lambda_returns(**inputs, **kwargs)
    th.testing.assert_close(returns, soft_lambda_returns_loop(**inputs, **kwargs))

    # No Python loop over the batch: 1024 windows run exactly the same PyTorch operations as one window.
    single = {key: value[:1] for key, value in inputs.items()}
    n_ops = count_torch_ops(lambda: soft_lambda_returns(**inputs, **kwargs))
    assert n_ops == count_torch_ops(lambda: soft_lambda_returns(**single, **kwargs))


# --------------------------------------------------------------------------------------------------------------
# Identities (SPEC section 3)
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("prior", [False, True])
def test_lambda_zero_and_single_step_are_one_step_soft_q(trace, prior):
    inputs = make_inputs(6, 8, seed=1, prior=prior)
    gamma, ent_coef = 0.9, 0.3
    one_step = inputs["rewards"] + gamma * (1.0 - inputs["terminated"].double()) * soft_value(
        inputs["next_q_values"], ent_coef, inputs.get("next_log_prior")
    )
    returns = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=0.0, ent_coef=ent_coef, trace=trace)
    th.testing.assert_close(returns, one_step)

    single_step = {key: value[:, :1] for key, value in inputs.items()}
    returns = soft_lambda_returns(**single_step, gamma=gamma, trace_lambda=1.0, ent_coef=ent_coef, trace=trace)
    th.testing.assert_close(returns, one_step[:, :1])


def n_step_tree_backup_returns(inputs, gamma, ent_coef, t, n):
    """
    n-step Soft Tree Backup return G_{t:t+n} of every window, built forwards from one-step soft TD errors
    (paper eq. 36, 46), independently of the backward recursion:

    G_{t:t+n} = r_t + g_t V(s_{t+1}) + sum_{k=t+1}^{t+n-1} (prod_{i=t+1}^{k} g_{i-1} pi_B(a_i|s_i)) delta_k,
    delta_k = r_k + g_k V(s_{k+1}) - Q(s_k, a_k), g_k = gamma (1 - terminated_k).

    Position k of the inputs holds s_{k+1}, a_{k+1}: Q(s_k, a_k) and pi_B(a_k|s_k) are read at position k - 1.
    """
    rewards = inputs["rewards"]
    values = soft_value(inputs["next_q_values"], ent_coef, inputs.get("next_log_prior"))
    action_values = inputs["next_q_values"].gather(-1, inputs["next_actions"].unsqueeze(-1)).squeeze(-1)
    policy_probs = next_policy_probs(inputs, ent_coef)
    discounts = gamma * (1.0 - inputs["terminated"].double())
    total = rewards[:, t] + discounts[:, t] * values[:, t]
    weight = th.ones_like(total)
    for k in range(t + 1, t + n):
        weight = weight * discounts[:, k - 1] * policy_probs[:, k - 1]
        delta = rewards[:, k] + discounts[:, k] * values[:, k] - action_values[:, k - 1]
        total = total + weight * delta
    return total


@pytest.mark.parametrize("trace_lambda", [0.0, 0.3, 0.8, 1.0])
def test_lambda_return_is_mixture_of_n_step_tree_backup_returns(trace_lambda):
    """G^lambda_t = (1 - lambda) sum_{n<N} lambda^{n-1} G^(n)_t + lambda^{N-1} G^(N)_t (paper eq. 37)."""
    n_steps, gamma, ent_coef = 7, 0.9, 0.5
    for seed in range(5):
        # One episode per window here: the horizon N_t = T - t is the same for every row.
        inputs = make_inputs(4, n_steps, seed=seed, prior=seed % 2 == 1, p_terminated=0.0, p_truncated=0.0, p_cut=0.0)
        inputs["terminated"][:, -1] = th.tensor([True, False, True, False])
        returns = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=trace_lambda, ent_coef=ent_coef)
        for t in range(n_steps):
            horizon = n_steps - t
            mixture = trace_lambda ** (horizon - 1) * n_step_tree_backup_returns(inputs, gamma, ent_coef, t, horizon)
            for n in range(1, horizon):
                mixture = mixture + (1 - trace_lambda) * trace_lambda ** (n - 1) * n_step_tree_backup_returns(
                    inputs, gamma, ent_coef, t, n
                )
            th.testing.assert_close(returns[:, t], mixture)


@pytest.mark.parametrize("n_steps", [1, 2, 5])
def test_lambda_one_tree_backup_is_n_step_soft_tree_backup(n_steps):
    gamma, ent_coef = 0.95, 0.2
    inputs = make_inputs(8, n_steps, seed=n_steps, prior=True, p_terminated=0.0, p_truncated=0.0, p_cut=0.0)
    returns = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=1.0, ent_coef=ent_coef)
    for t in range(n_steps):
        th.testing.assert_close(returns[:, t], n_step_tree_backup_returns(inputs, gamma, ent_coef, t, n_steps - t))
    if n_steps == 2:
        # Written out (paper eq. 17): G_{0:2} = r_0 + gamma [V_1 + pi_1 (r_1 + gamma V_2 - Q_1)]
        values = soft_value(inputs["next_q_values"], ent_coef, inputs["next_log_prior"])
        q_1 = inputs["next_q_values"][th.arange(8), 0, inputs["next_actions"][:, 0]]
        pi_1 = next_policy_probs(inputs, ent_coef)[:, 0]
        r = inputs["rewards"]
        expected = r[:, 0] + gamma * (values[:, 0] + pi_1 * (r[:, 1] + gamma * values[:, 1] - q_1))
        th.testing.assert_close(returns[:, 0], expected)


def test_small_temperature_is_hard_tree_backup():
    """tau -> 0: V -> max Q and pi_B -> greedy one-hot, i.e. Watkins-style hard tree backup."""
    batch_size, n_steps, n_actions, gamma = 16, 12, 4, 0.9
    gen = th.Generator().manual_seed(3)
    # Distinct action values, at least 0.1 apart within each state.
    ranks = th.argsort(th.rand(batch_size, n_steps, n_actions, generator=gen), dim=-1).double()
    next_q_values = 0.5 * ranks + 0.05 * th.rand(batch_size, n_steps, n_actions, generator=gen, dtype=th.float64)
    greedy = next_q_values.argmax(dim=-1)
    random_actions = th.randint(n_actions, (batch_size, n_steps), generator=gen)
    next_actions = th.where(th.rand(batch_size, n_steps, generator=gen) < 0.6, greedy, random_actions)
    terminated = th.rand(batch_size, n_steps, generator=gen) < 0.1
    continues = ~terminated & (th.rand(batch_size, n_steps, generator=gen) > 0.1)
    rewards = th.randn(batch_size, n_steps, generator=gen, dtype=th.float64)

    # Hard oracle, from max and one-hot argmax.
    q_max = next_q_values.max(dim=-1).values.tolist()
    q_taken = next_q_values.gather(-1, next_actions.unsqueeze(-1)).squeeze(-1).tolist()
    is_greedy = (next_actions == greedy).tolist()
    expected = [[0.0] * n_steps for _ in range(batch_size)]
    for b in range(batch_size):
        g_next = 0.0
        for k in reversed(range(n_steps)):
            bootstrap = q_max[b][k]
            if k < n_steps - 1 and continues[b, k] and is_greedy[b][k]:
                bootstrap += g_next - q_taken[b][k]
            g = rewards[b, k].item() + gamma * (1.0 - float(terminated[b, k])) * bootstrap
            expected[b][k] = g_next = g

    for ent_coef in (1e-4, 1e-6):
        returns = soft_lambda_returns(
            rewards, next_q_values, next_actions, terminated, continues, gamma, 1.0, ent_coef, trace="tree_backup"
        )
        # V = max Q + tau log(1/|A|) + o(tau): the error is of order tau * log|A| * n_steps.
        th.testing.assert_close(returns, th.tensor(expected, dtype=th.float64), rtol=0, atol=50 * ent_coef)


@pytest.mark.parametrize("prior", [False, True])
def test_boltzmann_on_policy_is_sampled_soft_return(prior):
    """
    boltzmann, lambda = 1, actions drawn from pi_B: the return telescopes to the sampled soft return
    r_t + sum_{k=t+1}^{t+n-1} gamma^{k-t} (r_k - tau log(pi_B(a_k|s_k) / prior(a_k|s_k))) + gamma^n V(s_{t+n}).
    """
    batch_size, n_steps, n_actions, gamma, ent_coef = 6, 6, 3, 0.9, 0.7
    gen = th.Generator().manual_seed(11)
    # One trajectory s_0 .. s_n per row: q_values[:, k] = Q(s_k, .), log_prior[:, k] = log prior(.|s_k).
    q_values = th.randn(batch_size, n_steps + 1, n_actions, generator=gen, dtype=th.float64)
    if prior:
        log_prior = th.log_softmax(th.randn(batch_size, n_steps + 1, n_actions, generator=gen, dtype=th.float64), -1)
    else:
        log_prior = th.full_like(q_values, -math.log(n_actions))
    # pi_B(.|s_k), computed independently of soft.py
    policy = th.tensor(
        [
            [[boltzmann_prob_loop(q_values[b, k].tolist(), a, ent_coef, log_prior[b, k].tolist()) for a in range(n_actions)]
             for k in range(n_steps + 1)]
            for b in range(batch_size)
        ],
        dtype=th.float64,
    )  # fmt: skip
    actions = th.multinomial(policy.reshape(-1, n_actions), 1, generator=gen).reshape(batch_size, n_steps + 1)
    rewards = th.randn(batch_size, n_steps, generator=gen, dtype=th.float64)

    returns = soft_lambda_returns(
        rewards,
        next_q_values=q_values[:, 1:],
        next_actions=actions[:, 1:],
        terminated=th.zeros(batch_size, n_steps, dtype=th.bool),
        continues=th.ones(batch_size, n_steps, dtype=th.bool),
        gamma=gamma,
        trace_lambda=1.0,
        ent_coef=ent_coef,
        trace="boltzmann",
        next_log_prior=log_prior[:, 1:] if prior else None,
    )
    for b in range(batch_size):
        for t in range(n_steps):
            sampled = rewards[b, t].item()
            for k in range(t + 1, n_steps):
                a_k = actions[b, k].item()
                log_ratio = math.log(policy[b, k, a_k].item()) - log_prior[b, k, a_k].item()
                sampled += gamma ** (k - t) * (rewards[b, k].item() - ent_coef * log_ratio)
            sampled += gamma ** (n_steps - t) * soft_value_loop(
                q_values[b, n_steps].tolist(), ent_coef, log_prior[b, n_steps].tolist()
            )
            assert returns[b, t].item() == pytest.approx(sampled, rel=1e-10, abs=1e-10)


@pytest.mark.parametrize("trace", TRACES)
@pytest.mark.parametrize("boundary", [0, 3, 7])
@pytest.mark.parametrize("kind", ["terminated", "truncated"])
def test_episode_split(trace, boundary, kind):
    """A window with an episode end at `boundary` equals the two episodes computed separately."""
    n_steps = 9
    inputs = make_inputs(5, n_steps, seed=boundary, prior=True, p_terminated=0.0, p_truncated=0.0, p_cut=0.0)
    inputs["continues"][:, boundary] = False
    inputs["terminated"][:, boundary] = kind == "terminated"
    kwargs = dict(gamma=0.9, trace_lambda=0.8, ent_coef=0.5, trace=trace)
    returns = soft_lambda_returns(**inputs, **kwargs)
    first = soft_lambda_returns(**{key: value[:, : boundary + 1] for key, value in inputs.items()}, **kwargs)
    second = soft_lambda_returns(**{key: value[:, boundary + 1 :] for key, value in inputs.items()}, **kwargs)
    th.testing.assert_close(returns, th.cat((first, second), dim=1))


@pytest.mark.parametrize("trace", TRACES)
def test_terminated_and_truncated_differ(trace):
    n_steps, boundary, gamma, ent_coef = 6, 3, 0.9, 0.5
    inputs = make_inputs(4, n_steps, seed=5, p_terminated=0.0, p_truncated=0.0, p_cut=0.0)
    inputs["continues"][:, boundary] = False
    truncated = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=1.0, ent_coef=ent_coef, trace=trace)
    inputs["terminated"][:, boundary] = True
    terminated = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=1.0, ent_coef=ent_coef, trace=trace)

    value = soft_value(inputs["next_q_values"][:, boundary], ent_coef)
    # truncated: bootstrap with V(s_next) (the final observation); terminated: no bootstrap
    th.testing.assert_close(truncated[:, boundary], inputs["rewards"][:, boundary] + gamma * value)
    th.testing.assert_close(terminated[:, boundary], inputs["rewards"][:, boundary])
    # the next episode is unaffected, the earlier steps see the difference through the trace
    th.testing.assert_close(truncated[:, boundary + 1 :], terminated[:, boundary + 1 :])
    assert not th.allclose(truncated[:, : boundary + 1], terminated[:, : boundary + 1])


@pytest.mark.parametrize("trace", TRACES)
def test_non_uniform_prior(trace):
    """A reference policy changes V and pi_B exactly as soft.py defines them; the uniform one equals None."""
    inputs = make_inputs(6, 5, n_actions=4, seed=2, prior=True)
    gamma, trace_lambda, ent_coef = 0.9, 0.7, 0.4
    q, log_prior = inputs["next_q_values"], inputs["next_log_prior"]

    # V(s) = tau log sum_a prior(a|s) exp(Q(s,a)/tau), straight from the definition
    direct_value = ent_coef * th.log((log_prior.exp() * th.exp(q / ent_coef)).sum(-1))
    th.testing.assert_close(soft_value(q, ent_coef, log_prior), direct_value)
    one_step = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=0.0, ent_coef=ent_coef, trace=trace)
    th.testing.assert_close(one_step, inputs["rewards"] + gamma * (1.0 - inputs["terminated"].double()) * direct_value)

    # pi_B(a|s) = prior(a|s) exp((Q(s,a) - V(s))/tau)
    actions = inputs["next_actions"]
    policy_probs = log_prior.gather(-1, actions.unsqueeze(-1)).squeeze(-1).exp() * th.exp(
        (q.gather(-1, actions.unsqueeze(-1)).squeeze(-1) - direct_value) / ent_coef
    )
    coefs = soft_trace_coefficients(q, actions, trace_lambda, ent_coef, trace, log_prior, inputs["next_behaviour_probs"])
    expected = {
        "tree_backup": trace_lambda * policy_probs,
        "boltzmann": th.full_like(policy_probs, trace_lambda),
        "importance_sampling": trace_lambda * policy_probs / inputs["next_behaviour_probs"],
        "retrace": trace_lambda * (policy_probs / inputs["next_behaviour_probs"]).clamp(max=1.0),
    }[trace]
    th.testing.assert_close(coefs, expected)

    with_prior = soft_lambda_returns(**inputs, gamma=gamma, trace_lambda=trace_lambda, ent_coef=ent_coef, trace=trace)
    uniform = {**inputs, "next_log_prior": th.full_like(log_prior, -math.log(4))}
    without_prior = {**inputs, "next_log_prior": None}
    kwargs = dict(gamma=gamma, trace_lambda=trace_lambda, ent_coef=ent_coef, trace=trace)
    th.testing.assert_close(soft_lambda_returns(**uniform, **kwargs), soft_lambda_returns(**without_prior, **kwargs))
    assert not th.allclose(with_prior, soft_lambda_returns(**without_prior, **kwargs))


@pytest.mark.parametrize("trace", ["importance_sampling", "retrace"])
def test_behaviour_probs_required(trace):
    inputs = make_inputs(2, 3, seed=0)
    inputs["next_behaviour_probs"] = None
    with pytest.raises(ValueError, match="next_behaviour_probs"):
        soft_lambda_returns(**inputs, gamma=0.9, trace_lambda=0.5, ent_coef=0.1, trace=trace)
    with pytest.raises(ValueError, match="next_behaviour_probs"):
        soft_trace_coefficients(inputs["next_q_values"], inputs["next_actions"], 0.5, 0.1, trace)


@pytest.mark.parametrize("trace_lambda", [0.0, 0.6, 1.0])
def test_ratio_traces_reduce_to_tree_backup_and_boltzmann(trace_lambda):
    """
    With mu = pi_B (on-policy), pi_B/mu = 1: importance_sampling and retrace both give c = lambda, i.e. "boltzmann".
    With mu = 1 (a behaviour that always takes the stored action), pi_B/mu = pi_B <= 1: both give "tree_backup".
    """
    inputs = make_inputs(8, 10, seed=4, prior=True)
    kwargs = dict(gamma=0.9, trace_lambda=trace_lambda, ent_coef=0.3)
    tree_backup = soft_lambda_returns(**inputs, **kwargs, trace="tree_backup")
    boltzmann = soft_lambda_returns(**inputs, **kwargs, trace="boltzmann")

    on_policy = {**inputs, "next_behaviour_probs": next_policy_probs(inputs, 0.3)}
    th.testing.assert_close(soft_lambda_returns(**on_policy, **kwargs, trace="importance_sampling"), boltzmann)
    th.testing.assert_close(soft_lambda_returns(**on_policy, **kwargs, trace="retrace"), boltzmann)

    certain = {**inputs, "next_behaviour_probs": th.ones_like(inputs["next_behaviour_probs"])}
    th.testing.assert_close(soft_lambda_returns(**certain, **kwargs, trace="importance_sampling"), tree_backup)
    th.testing.assert_close(soft_lambda_returns(**certain, **kwargs, trace="retrace"), tree_backup)


def test_retrace_is_truncated_importance_sampling():
    inputs = make_inputs(8, 10, seed=9)
    args = (inputs["next_q_values"], inputs["next_actions"], 0.9, 0.5)
    mu = inputs["next_behaviour_probs"]
    is_coefs = soft_trace_coefficients(*args, "importance_sampling", next_behaviour_probs=mu)
    retrace_coefs = soft_trace_coefficients(*args, "retrace", next_behaviour_probs=mu)
    th.testing.assert_close(retrace_coefs, th.minimum(is_coefs, th.full_like(is_coefs, 0.9)))
    assert (retrace_coefs <= 0.9 + 1e-12).all()


# --------------------------------------------------------------------------------------------------------------
# Golden values, computed by hand
# --------------------------------------------------------------------------------------------------------------


def golden_inputs():
    """
    One window of two steps, two actions, tau = 1, uniform prior, gamma = 0.5.

    step 0: r_0 = 1, Q(s_1, .) = [0, ln 3], a_1 = 1
            V(s_1) = ln(1/2 + 3/2) = ln 2, pi_B(a_1|s_1) = (1/2 * 3) / 2 = 3/4, Q(s_1, a_1) = ln 3
    step 1: r_1 = 2, Q(s_2, .) = [0, 0]: V(s_2) = ln 1 = 0, so G_1 = 2 + 0.5 * 0 = 2
    """
    return dict(
        rewards=th.tensor([[1.0, 2.0]], dtype=th.float64),
        next_q_values=th.tensor([[[0.0, math.log(3.0)], [0.0, 0.0]]], dtype=th.float64),
        next_actions=th.tensor([[1, 0]]),
        terminated=th.tensor([[False, False]]),
        continues=th.tensor([[True, False]]),
        next_behaviour_probs=th.tensor([[0.5, 0.5]], dtype=th.float64),
    )


@pytest.mark.parametrize(
    "trace, trace_lambda, expected_g0",
    [
        # 1 + 0.5 (ln 2 + 0.75 (2 - ln 3))
        ("tree_backup", 1.0, 1.6845939820294316),
        # 1 + 0.5 (ln 2 + 0.5 (2 - ln 3))
        ("boltzmann", 0.5, 1.5719205181129452),
        # c = 0: 1 + 0.5 ln 2
        ("tree_backup", 0.0, 1.3465735902799727),
        # c = (3/4) / (1/2) = 1.5: 1 + 0.5 (ln 2 + 1.5 (2 - ln 3))
        ("importance_sampling", 1.0, 2.0226143737788904),
        # c = min(1, 1.5) = 1: 1 + 0.5 (ln 2 + (2 - ln 3))
        ("retrace", 1.0, 1.7972674459459177),
    ],
)
def test_golden_two_steps(trace, trace_lambda, expected_g0):
    returns = soft_lambda_returns(**golden_inputs(), gamma=0.5, trace_lambda=trace_lambda, ent_coef=1.0, trace=trace)
    assert returns[0, 0].item() == pytest.approx(expected_g0, abs=1e-12)
    assert returns[0, 1].item() == pytest.approx(2.0, abs=1e-12)


def test_golden_episode_end():
    inputs = golden_inputs()
    inputs["continues"][0, 0] = False
    # truncated after step 0: G_0 = 1 + 0.5 ln 2
    returns = soft_lambda_returns(**inputs, gamma=0.5, trace_lambda=1.0, ent_coef=1.0)
    assert returns[0].tolist() == pytest.approx([1.3465735902799727, 2.0], abs=1e-12)
    # terminated at step 0: G_0 = 1
    inputs["terminated"][0, 0] = True
    returns = soft_lambda_returns(**inputs, gamma=0.5, trace_lambda=1.0, ent_coef=1.0)
    assert returns[0].tolist() == pytest.approx([1.0, 2.0], abs=1e-12)


def test_trace_diagnostics_by_hand():
    trace_coefs = th.tensor([[0.5, 0.02, 1.0], [0.8, 0.9, 0.3]])
    continues = th.tensor([[1, 1, 1], [1, 0, 1]])  # the last column is outside the window
    # continuing steps: (0, 0) c=0.5, (0, 1) c=0.02, (1, 0) c=0.8
    # lengths L_t = 1 + c_t L_{t+1}: row 0: [1 + 0.5 * 1.02, 1 + 0.02 * 1, 1] = [1.51, 1.02, 1]; row 1: [1.8, 1, 1]
    stats = trace_diagnostics(trace_coefs, continues)
    assert set(stats) == {"mean_trace_coef", "effective_trace_length", "cut_fraction"}
    # 0-d float32 tensors on the device of the coefficients: no host read inside
    assert all(isinstance(value, th.Tensor) and value.shape == () and value.dtype == th.float32 for value in stats.values())
    stats = {key: float(value) for key, value in stats.items()}
    assert stats["mean_trace_coef"] == pytest.approx((0.5 + 0.02 + 0.8) / 3)
    assert stats["cut_fraction"] == pytest.approx(1 / 3)
    assert stats["effective_trace_length"] == pytest.approx((1.51 + 1.02 + 1 + 1.8 + 1 + 1) / 6)

    valid = th.tensor([[True, True, True], [True, False, False]])
    stats = {key: float(value) for key, value in trace_diagnostics(trace_coefs, continues.bool(), valid).items()}
    assert stats["mean_trace_coef"] == pytest.approx((0.5 + 0.02 + 0.8) / 3)
    assert stats["effective_trace_length"] == pytest.approx((1.51 + 1.02 + 1 + 1.8) / 4)

    # windows of length 1 never continue
    stats = {key: float(value) for key, value in trace_diagnostics(th.rand(4, 1), th.ones(4, 1, dtype=th.bool)).items()}
    assert stats == {"mean_trace_coef": 0.0, "effective_trace_length": 1.0, "cut_fraction": 0.0}
    # every trace kept at c = 1: the remaining window length, T - t
    stats = trace_diagnostics(th.ones(2, 4), th.ones(2, 4, dtype=th.bool))
    assert float(stats["effective_trace_length"]) == pytest.approx((4 + 3 + 2 + 1) / 4)


# --------------------------------------------------------------------------------------------------------------
# Robustness and validation
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("trace", TRACES)
def test_values_where_the_trace_is_cut_are_ignored(trace):
    """next_actions and mu are arbitrary where continues is 0 (padding, the step after an episode end)."""
    n_actions = 3
    inputs = make_inputs(16, 12, n_actions=n_actions, seed=6, p_cut=0.2)
    kwargs = dict(gamma=0.9, trace_lambda=0.9, ent_coef=0.2, trace=trace)
    returns = soft_lambda_returns(**inputs, **kwargs)
    cut = ~inputs["continues"]
    cut[:, -1] = True
    for fill in (0, n_actions - 1, -1, n_actions + 5):
        padded = {**inputs, "next_actions": inputs["next_actions"].masked_fill(cut, fill)}
        padded["next_behaviour_probs"] = inputs["next_behaviour_probs"].masked_fill(cut, 0.0)  # pi/mu = inf or nan
        padded_returns = soft_lambda_returns(**padded, **kwargs)
        assert th.isfinite(padded_returns).all()
        th.testing.assert_close(padded_returns, returns)


def test_general_returns_mask_non_finite_coefficients_where_cut():
    rewards, values, action_values = th.randn(3, 4), th.randn(3, 4), th.randn(3, 4)
    discounts = th.full((3, 4), 0.9)
    continues = th.tensor([[1, 0, 1, 1], [0, 0, 0, 0], [1, 1, 1, 0]], dtype=th.bool)
    coefs = th.rand(3, 4)
    finite = general_off_policy_returns(rewards, values, action_values, coefs, discounts, continues)
    coefs[~continues] = float("nan")
    coefs[:, -1] = float("inf")
    th.testing.assert_close(general_off_policy_returns(rewards, values, action_values, coefs, discounts, continues), finite)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [th.float32, th.float64])
def test_devices_dtypes_and_input_forms(device, dtype):
    inputs = {key: value.to(device) for key, value in make_inputs(4, 6, dtype=dtype, seed=8, prior=True).items()}
    kwargs = dict(gamma=0.9, trace_lambda=0.7, trace="retrace")
    returns = soft_lambda_returns(**inputs, **kwargs, ent_coef=0.3)
    assert returns.device.type == device and returns.dtype == dtype
    expected = soft_lambda_returns_loop(**{key: value.cpu() for key, value in inputs.items()}, **kwargs, ent_coef=0.3)
    th.testing.assert_close(returns.cpu().double(), expected, **tolerances(dtype, expected))
    # 0-d tensor temperature, float flags, [B, T, 1] actions
    variant = {
        **inputs,
        "terminated": inputs["terminated"].to(dtype),
        "continues": inputs["continues"].to(dtype),
        "next_actions": inputs["next_actions"].unsqueeze(-1),
    }
    ent_coef = th.tensor(0.3, dtype=dtype, device=device)
    th.testing.assert_close(soft_lambda_returns(**variant, **kwargs, ent_coef=ent_coef), returns)
    stats = trace_diagnostics(
        soft_trace_coefficients(inputs["next_q_values"], inputs["next_actions"], 0.7, 0.3), inputs["continues"]
    )
    assert all(value.device.type == device and math.isfinite(value) for value in stats.values())


def test_invalid_arguments():
    inputs = make_inputs(2, 3, seed=0)
    kwargs = dict(gamma=0.9, trace_lambda=0.5, ent_coef=0.1)
    with pytest.raises(ValueError, match=r"trace.*'tree_backup', 'boltzmann', 'importance_sampling', 'retrace'"):
        soft_lambda_returns(**inputs, **kwargs, trace="watkins")
    for trace_lambda in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"trace_lambda.*\[0, 1\]"):
            soft_lambda_returns(**inputs, **{**kwargs, "trace_lambda": trace_lambda})
    with pytest.raises(ValueError, match=r"gamma.*\[0, 1\]"):
        soft_lambda_returns(**inputs, **{**kwargs, "gamma": 1.1})
    for ent_coef in (0.0, -1.0):
        with pytest.raises(ValueError, match="ent_coef"):
            soft_lambda_returns(**inputs, **{**kwargs, "ent_coef": ent_coef})
    with pytest.raises(ValueError, match="ent_coef"):
        soft_lambda_returns(**inputs, **{**kwargs, "ent_coef": th.ones(2)})
    bad_shapes = {
        "next_q_values": inputs["next_q_values"][..., 0],
        "rewards": inputs["rewards"][:, :2],
        "terminated": inputs["terminated"][:1],
        "continues": inputs["continues"].unsqueeze(-1),
        "next_actions": inputs["next_actions"][:, :2],
        "next_log_prior": th.zeros(2, 3, 2, dtype=th.float64),
        "next_behaviour_probs": inputs["next_behaviour_probs"][:, :1],
    }
    for name, bad in bad_shapes.items():
        with pytest.raises(ValueError, match=name):
            soft_lambda_returns(**{**inputs, name: bad}, **kwargs, trace="retrace")
    with pytest.raises(ValueError, match="discounts"):
        general_off_policy_returns(*(th.zeros(2, 3) for _ in range(4)), th.zeros(2, 4), th.ones(2, 3))
    with pytest.raises(ValueError, match="continues"):
        trace_diagnostics(th.zeros(2, 3), th.ones(3, 2))


# --------------------------------------------------------------------------------------------------------------
# Opt-in compiled returns
# --------------------------------------------------------------------------------------------------------------


def test_compiled_returns_fall_back_to_eager_when_the_compiler_fails():
    def failing_backend(graph_module, example_inputs):
        raise RuntimeError("no compiler here")

    compiled = compiled_soft_lambda_returns(backend=failing_backend)
    inputs = make_inputs(3, 5, dtype=th.float32, seed=11)
    kwargs = dict(gamma=0.9, trace_lambda=0.8, ent_coef=0.2, trace="retrace")
    with pytest.warns(UserWarning, match="torch.compile failed"):
        first = compiled(**inputs, **kwargs)
    expected = soft_lambda_returns_with_extras(**inputs, **kwargs)
    th.testing.assert_close(first, expected, rtol=0, atol=0)
    th.testing.assert_close(compiled(**inputs, **kwargs), expected, rtol=0, atol=0)  # no second warning needed
    with pytest.raises(ValueError, match="trace_lambda"):  # the same checks as the eager function
        compiled(**inputs, **{**kwargs, "trace_lambda": 2.0})


@pytest.mark.slow
def test_compiled_returns_equal_eager():
    """torch.compile (Inductor) fuses and reorders the arithmetic: equal up to float32 rounding."""
    compiled = compiled_soft_lambda_returns()
    inputs = make_inputs(16, 8, dtype=th.float32, seed=12, prior=True)
    kwargs = dict(gamma=0.99, trace_lambda=0.9, ent_coef=th.tensor(0.1), trace="tree_backup")
    expected = soft_lambda_returns_with_extras(**inputs, **kwargs)
    result = compiled(**inputs, **kwargs)
    th.testing.assert_close(result.returns, expected.returns, rtol=1e-6, atol=1e-6)
    th.testing.assert_close(result.trace_coefs, expected.trace_coefs, rtol=1e-6, atol=1e-6)
