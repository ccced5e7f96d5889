"""
The NumPy forward views of ``sb3_softq.tabular.returns`` against the PyTorch returns of ``sb3_softq.common.returns``,
and the tabular trace vocabulary against the registry ``sb3_softq.common.traces``.

The two implementations compute the same returns with different conventions, which these tests translate:

- Indexing: in the NumPy views, position ``k`` of the trace coefficients and of ``behaviour_probs`` belongs to step
  ``k`` (:math:`c_k`, :math:`\\mu(a_k|s_k)`; :math:`c_0` is never used); in PyTorch, position ``k`` of
  ``trace_coefs`` / ``next_behaviour_probs`` / ``next_actions`` belongs to step ``k + 1`` (the last one is never used).
- Windows: NumPy's ``n`` is the number of TD errors summed from every start ``t`` (the window cut at the end of the
  episode); PyTorch returns, at every position ``k`` of a window of length ``L``, the return up to the window's end
  (``L - k`` steps). So the n-step return :math:`G_{t:t+n}` is position 0 of a PyTorch window of length ``n`` starting
  at ``t``; with ``n=None`` (to the end of the episode) the whole episode as one PyTorch window gives every position.
- Episode ends: a NumPy view takes one episode (the final observation last, ``terminated`` for its last step); a
  PyTorch window may hold several, cut by ``continues = 0`` at the end of each (``terminated`` there or not, for a
  time limit). A window with an episode end inside equals the NumPy views of the two episodes.
- ``"retrace"`` is in the registry but not implemented by the tabular learner and views.
"""

import numpy as np
import pytest
import torch as th

from sb3_softq.common import traces as registry
from sb3_softq.common.returns import soft_lambda_returns, soft_trace_coefficients
from sb3_softq.tabular import TabularMDPEnv, multistep_soft_returns, random_mdp, trace_coefficients
from sb3_softq.tabular import traces as tabular_traces

N_STATES, N_ACTIONS = 5, 3


def random_episode(length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A trajectory of a random MDP under a random (non-uniform) behaviour policy, with mu of each action taken."""
    rng = np.random.default_rng(seed)
    env = TabularMDPEnv(random_mdp(N_STATES, N_ACTIONS, seed=seed), max_episode_steps=length)
    obs, _ = env.reset(seed=seed)
    observations, actions, rewards, mus = [obs], [], [], []
    for _ in range(length):
        mu = rng.dirichlet(np.ones(N_ACTIONS)) * 0.9 + 0.1 / N_ACTIONS
        action = int(rng.choice(N_ACTIONS, p=mu))
        obs, reward, _, _, _ = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(float(reward))
        mus.append(mu[action])
    return np.array(observations), np.array(actions), np.array(rewards), np.array(mus)


def torch_window(q, log_prior, episodes, start=0, length=None):
    """
    The PyTorch window over consecutive ``episodes`` (each ``(obs, act, rew, mu, terminated)``) from step ``start``,
    ``length`` steps long (to the end when ``None``): the inputs of ``soft_lambda_returns``, batch of 1.
    """
    rewards, next_q, next_prior, next_actions, next_mu, terminated, continues = [], [], [], [], [], [], []
    for obs, act, rew, mu, done in episodes:
        steps = len(act)
        rewards += list(rew)
        next_q += list(q[obs[1:]])
        next_prior += list(log_prior[obs[1:]])
        next_actions += [*act[1:], 0]  # the action after the episode's last step is never used
        next_mu += [*mu[1:], 1.0]
        terminated += [False] * (steps - 1) + [done]
        continues += [True] * (steps - 1) + [False]
    end = len(rewards) if length is None else start + length
    window = slice(start, end)

    def tensor(values, dtype=th.float64):
        return th.as_tensor(np.asarray(values[window]), dtype=dtype).unsqueeze(0)

    return dict(
        rewards=tensor(rewards),
        next_q_values=tensor(next_q),
        next_actions=tensor(next_actions, th.int64),
        terminated=tensor(terminated, th.bool),
        continues=tensor(continues, th.bool),
        next_log_prior=tensor(next_prior),
        next_behaviour_probs=tensor(next_mu),
    )


GRID = [
    (trace, trace_lambda, gamma, ent_coef, with_prior)
    for trace in tabular_traces.TRACES
    for trace_lambda in (0.0, 0.6, 1.0)
    for gamma, ent_coef in ((0.9, 0.3), (1.0, 2.0))
    for with_prior in (False, True)
]


def setup(seed: int, with_prior: bool) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    rng = np.random.default_rng(100 + seed)
    q = rng.normal(size=(N_STATES, N_ACTIONS))
    log_prior = np.log(rng.dirichlet(np.ones(N_ACTIONS), size=N_STATES)) if with_prior else None
    table = np.full((N_STATES, N_ACTIONS), -np.log(N_ACTIONS)) if log_prior is None else log_prior
    return q, log_prior, table


@pytest.mark.parametrize(("trace", "trace_lambda", "gamma", "ent_coef", "with_prior"), GRID)
@pytest.mark.parametrize("terminated", [False, True])
def test_lambda_returns_of_an_episode_equal_the_torch_returns(trace, trace_lambda, gamma, ent_coef, with_prior, terminated):
    """n=None: the whole episode as one PyTorch window gives the NumPy forward view at every position."""
    q, log_prior, table = setup(0, with_prior)
    obs, act, rew, mu = random_episode(7, seed=1)
    expected = multistep_soft_returns(q, obs, act, rew, terminated, gamma, ent_coef, trace, trace_lambda, None, log_prior, mu)
    returns = soft_lambda_returns(
        **torch_window(q, table, [(obs, act, rew, mu, terminated)]),
        gamma=gamma,
        trace_lambda=trace_lambda,
        ent_coef=ent_coef,
        trace=trace,
    )
    np.testing.assert_allclose(returns[0].numpy(), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("trace", "trace_lambda", "gamma", "ent_coef", "with_prior"), GRID)
@pytest.mark.parametrize("first_terminated", [False, True])
def test_n_step_returns_with_an_episode_end_inside_the_window(
    trace, trace_lambda, gamma, ent_coef, with_prior, first_terminated
):
    """
    Two episodes back to back (the first terminated or truncated): the PyTorch window of ``n`` steps from every
    ``t`` (crossing the episode end for the last steps of the first episode) gives at position 0 the NumPy n-step
    return of ``t``'s episode, and the whole trajectory as one window gives the two episodes' λ-returns.
    """
    q, log_prior, table = setup(1, with_prior)
    first = (*random_episode(4, seed=2), first_terminated)
    second = (*random_episode(5, seed=3), False)
    kwargs = dict(gamma=gamma, trace_lambda=trace_lambda, ent_coef=ent_coef, trace=trace)

    def numpy_returns(episode, n):
        obs, act, rew, mu, done = episode
        return multistep_soft_returns(q, obs, act, rew, done, gamma, ent_coef, trace, trace_lambda, n, log_prior, mu)

    whole = soft_lambda_returns(**torch_window(q, table, [first, second]), **kwargs)[0].numpy()
    np.testing.assert_allclose(whole, np.concatenate([numpy_returns(first, None), numpy_returns(second, None)]), atol=1e-12)

    total = len(first[1]) + len(second[1])
    for n in (1, 2, 3):
        expected = np.concatenate([numpy_returns(first, n), numpy_returns(second, n)])
        for t in range(total):
            window = torch_window(q, table, [first, second], start=t, length=min(n, total - t))
            assert soft_lambda_returns(**window, **kwargs)[0, 0].item() == pytest.approx(expected[t], abs=1e-12)


@pytest.mark.parametrize("trace", tabular_traces.TRACES)
@pytest.mark.parametrize("with_prior", [False, True])
def test_trace_coefficients_equal_the_torch_and_registry_coefficients(trace, with_prior):
    """Tabular c_k (step k) = PyTorch c_{k+1} at position k - 1 = the registry's rule on NumPy arrays."""
    q, log_prior, table = setup(2, with_prior)
    obs, act, _, mu = random_episode(6, seed=4)
    coefs = trace_coefficients(q, obs, act, 0.7, trace, 0.8, log_prior, mu)
    torch_coefs = soft_trace_coefficients(
        th.as_tensor(q[obs[:-1]]).unsqueeze(0),
        th.as_tensor(act).unsqueeze(0),
        0.8,
        0.7,
        trace,
        th.as_tensor(table[obs[:-1]]).unsqueeze(0),
        th.as_tensor(mu).unsqueeze(0),
    )
    np.testing.assert_allclose(coefs, torch_coefs[0].numpy(), rtol=1e-12)
    target_probs = np.exp(q[obs[:-1]] / 0.7 + table[obs[:-1]])
    target_probs = (target_probs / target_probs.sum(-1, keepdims=True))[np.arange(len(act)), act]
    np.testing.assert_allclose(coefs, registry.trace_coefficients(trace, 0.8, target_probs, mu), rtol=1e-12)
    scalar = [tabular_traces.trace_coefficient(trace, 0.8, float(p), float(m)) for p, m in zip(target_probs, mu, strict=True)]
    np.testing.assert_allclose(scalar, coefs, rtol=1e-12)


def test_tabular_traces_are_a_subset_of_the_registry():
    """The tabular vocabulary is the registry's, minus what the tabular learner does not implement."""
    assert set(tabular_traces.TRACES) <= set(registry.TRACES)
    assert list(tabular_traces.TRACES) == [trace for trace in registry.TRACES if trace in tabular_traces.TRACES]
    assert tabular_traces.TRACES[0] == registry.TRACES[0]  # the same default
    for trace in tabular_traces.TRACES:
        assert tabular_traces.needs_behaviour_probs(trace) == registry.needs_behaviour_probs(trace)
    assert set(registry.TRACES) - set(tabular_traces.TRACES) == {"retrace"}
    with pytest.raises(ValueError, match="trace"):
        tabular_traces.needs_behaviour_probs("retrace")
