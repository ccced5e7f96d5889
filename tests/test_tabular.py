"""Tabular Soft Q(λ): soft maths, MDP helpers, forward/backward-view identities, API, persistence, docs example."""

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

from sb3_softq.tabular import (
    TabularMDP,
    TabularMDPEnv,
    TabularSoftQLambda,
    boltzmann_log_probs,
    boltzmann_probs,
    frozen_lake_model,
    multistep_soft_returns,
    n_step_soft_return,
    random_mdp,
    soft_td_errors,
    soft_value,
    soft_value_iteration,
    trace_coefficients,
)

ROOT = Path(__file__).resolve().parents[1]


def random_episode(mdp: TabularMDP, length: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A state-action path of ``length`` steps of ``mdp`` with uniform actions (rewards are the model's)."""
    rng = np.random.default_rng(seed)
    observations = [int(rng.integers(mdp.n_states))]
    actions = []
    for _ in range(length):
        actions.append(int(rng.integers(mdp.n_actions)))
        observations.append(int(rng.choice(mdp.n_states, p=mdp.transitions[observations[-1], actions[-1]])))
    obs, act = np.array(observations), np.array(actions)
    return obs, act, mdp.rewards[obs[:-1], act]


def lambda_mixture(q, obs, act, rew, terminated, gamma, tau, trace, trace_lambda, log_prior):
    """Forward-view λ-return as the mixture of direct-form n-step returns (paper eq. 37), the longest taking the rest."""
    horizon = len(act)
    by_n = np.stack(
        [n_step_soft_return(q, obs, act, rew, terminated, gamma, tau, n, trace, log_prior) for n in range(1, horizon + 1)]
    )
    returns = np.zeros(horizon)
    for t in range(horizon):
        longest = horizon - t
        weights = [(1 - trace_lambda) * trace_lambda ** (n - 1) for n in range(1, longest)] + [trace_lambda ** (longest - 1)]
        returns[t] = np.dot(weights, by_n[:longest, t])
    return returns


@pytest.fixture
def mdp() -> TabularMDP:
    return random_mdp(5, 3, seed=1, branching=3)


# ---------------------------------------------------------------------------------------------------- soft maths
def test_soft_value_and_boltzmann_policy():
    rng = np.random.default_rng(0)
    q = rng.normal(size=(7, 4)) * 3
    prior = rng.dirichlet(np.ones(4), size=7)
    tau = 0.7
    naive = tau * np.log((prior * np.exp(q / tau)).sum(-1))
    np.testing.assert_allclose(soft_value(q, tau, np.log(prior)), naive, rtol=1e-12)
    probs = boltzmann_probs(q, tau, np.log(prior))
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(probs, prior * np.exp((q - naive[:, None]) / tau), rtol=1e-10)
    # V = E_{pi_B}[Q] - tau KL(pi_B || prior)   (paper eq. 5 / 9)
    kl = (probs * (np.log(probs) - np.log(prior))).sum(-1)
    np.testing.assert_allclose(soft_value(q, tau, np.log(prior)), (probs * q).sum(-1) - tau * kl, rtol=1e-10)
    # uniform prior by default, finite for tiny temperatures and huge values, hard max / argmax in the limit
    np.testing.assert_allclose(soft_value(q, tau), tau * np.log(np.exp(q / tau).mean(-1)), rtol=1e-12)
    big = q * 1e4
    assert np.all(np.isfinite(soft_value(big, 1e-4))) and np.all(np.isfinite(boltzmann_log_probs(big, 1e-4)))
    np.testing.assert_allclose(soft_value(q, 1e-6), q.max(-1), atol=1e-4)
    np.testing.assert_array_equal(boltzmann_probs(q, 1e-6).argmax(-1), q.argmax(-1))
    assert boltzmann_probs(q, 1e-6).max(-1).min() > 1 - 1e-6


def test_soft_value_iteration_fixed_point(mdp):
    gamma, tau = 0.9, 0.3
    prior = np.random.default_rng(0).dirichlet(np.ones(3), size=5)
    q_star = soft_value_iteration(mdp.transitions, mdp.rewards, gamma, tau, prior)
    bellman = mdp.rewards + gamma * mdp.transitions @ soft_value(q_star, tau, np.log(prior))
    np.testing.assert_allclose(q_star, bellman, atol=1e-9)
    # a vector prior is the same prior in every state; tau -> 0 gives hard value iteration
    np.testing.assert_allclose(
        mdp.soft_q_values(gamma, tau, prior[0]),
        soft_value_iteration(mdp.transitions, mdp.rewards, gamma, tau, np.tile(prior[0], (5, 1))),
    )
    hard = np.zeros_like(mdp.rewards)
    for _ in range(2000):
        hard = mdp.rewards + gamma * mdp.transitions @ hard.max(-1)
    np.testing.assert_allclose(soft_value_iteration(mdp.transitions, mdp.rewards, gamma, 1e-5), hard, atol=1e-3)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        soft_value_iteration(mdp.transitions, mdp.rewards, gamma, tau, max_iterations=3)
    with pytest.raises(ValueError, match="rewards"):
        soft_value_iteration(mdp.transitions, mdp.rewards[:, :2], gamma, tau)
    with pytest.raises(ValueError, match="reference_policy"):
        soft_value_iteration(mdp.transitions, mdp.rewards, gamma, tau, [0.5, 0.5, 0.0])


# ---------------------------------------------------------------------------------------------------- MDP helpers
def test_random_mdp_and_env():
    mdp = random_mdp(6, 2, seed=3, branching=2)
    assert mdp.transitions.shape == (6, 2, 6) and mdp.rewards.shape == (6, 2)
    assert np.all((mdp.transitions > 0).sum(-1) == 2) and np.allclose(mdp.transitions.sum(-1), 1)
    assert np.all(mdp.initial_distribution > 0)
    np.testing.assert_array_equal(random_mdp(6, 2, seed=3, branching=2).transitions, mdp.transitions)

    env = TabularMDPEnv(mdp, max_episode_steps=5)
    check_env(env, skip_render_check=True)
    starts = {env.reset(seed=seed)[0] for seed in range(60)}
    assert starts == set(range(6))  # every state is a start state
    obs, _ = env.reset(seed=0)
    for step in range(5):
        next_obs, reward, terminated, truncated, _ = env.step(step % 2)
        assert reward == mdp.rewards[obs, step % 2] and mdp.transitions[obs, step % 2, next_obs] > 0
        assert not terminated and truncated == (step == 4)
        obs = next_obs

    one_hot = TabularMDPEnv(mdp, max_episode_steps=5, one_hot=True)
    check_env(one_hot, skip_render_check=True)
    obs, info = one_hot.reset(seed=0)
    assert isinstance(one_hot.observation_space, spaces.Box) and obs.shape == (6,) and obs.dtype == np.float32
    assert obs.sum() == 1 and obs[info["state"]] == 1

    with pytest.raises(ValueError, match="branching"):
        random_mdp(3, 2, branching=4)
    with pytest.raises(ValueError, match="absorbing"):
        TabularMDP(mdp.transitions, mdp.rewards, mdp.initial_distribution, terminal=np.eye(6, dtype=bool)[0])
    with pytest.raises(ValueError, match="initial_distribution"):
        TabularMDP(mdp.transitions, mdp.rewards, np.array([1.5, -0.5, 0, 0, 0, 0]))


@pytest.mark.parametrize("is_slippery", [False, True])
def test_frozen_lake_model(is_slippery):
    env = gym.make("FrozenLake-v1", is_slippery=is_slippery)
    mdp = frozen_lake_model(env)
    assert mdp.n_states == 16 and mdp.n_actions == 4
    assert mdp.terminal is not None and set(np.flatnonzero(mdp.terminal)) == {5, 7, 11, 12, 15}
    np.testing.assert_array_equal(mdp.initial_distribution, np.eye(16)[0])
    q_star = mdp.soft_q_values(0.9, 0.05)
    np.testing.assert_array_equal(q_star[mdp.terminal], 0.0)  # absorbing, zero value
    if not is_slippery:
        assert q_star[14, 2] == 1.0  # right from 14 enters the goal: reward 1, then nothing
        np.testing.assert_allclose(q_star[mdp.terminal == 0].max(), 1.0)
    # sampling the model reproduces FrozenLake's dynamics
    model_env = TabularMDPEnv(mdp, max_episode_steps=100)
    obs, _ = model_env.reset(seed=0)
    assert obs == 0


def test_toy_text_models():
    cliff = frozen_lake_model(gym.make("CliffWalking-v1"))
    assert cliff.terminal is not None and np.flatnonzero(cliff.terminal).tolist() == [47]
    taxi = frozen_lake_model(gym.make("Taxi-v4"))  # termination depends on the transition: one extra end state
    assert taxi.n_states == 501 and taxi.terminal is not None and np.flatnonzero(taxi.terminal).tolist() == [500]
    assert taxi.soft_q_values(0.9, 1.0, tol=1e-6)[:500].max() == pytest.approx(20.0)
    with pytest.raises(ValueError, match="toy-text"):
        frozen_lake_model(gym.make("CartPole-v1"))


# ---------------------------------------------------------------------------------------------------- forward views
@pytest.mark.parametrize("terminated", [True, False])
@pytest.mark.parametrize("trace", ["boltzmann", "tree_backup"])
def test_td_error_form_equals_direct_n_step_return(mdp, terminated, trace):
    """Paper eq. 23 = eq. 24 (Boltzmann) and eq. 36 = eq. 30 (tree backup), for a fixed table Q."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(5, 3))
    log_prior = np.log(rng.dirichlet(np.ones(3), size=5))
    obs, act, rew = random_episode(mdp, 7, seed=2)
    for n in range(1, 9):
        direct = n_step_soft_return(q, obs, act, rew, terminated, 0.9, 0.4, n, trace, log_prior)
        td_form = multistep_soft_returns(q, obs, act, rew, terminated, 0.9, 0.4, trace, 1.0, n, log_prior)
        np.testing.assert_allclose(td_form, direct, atol=1e-12)
    # n = 1 is one-step soft Q-learning
    deltas = soft_td_errors(q, obs, act, rew, terminated, 0.9, 0.4, log_prior)
    np.testing.assert_allclose(
        n_step_soft_return(q, obs, act, rew, terminated, 0.9, 0.4, 1, trace, log_prior), q[obs[:-1], act] + deltas
    )


def test_boltzmann_n_step_return_is_the_kl_augmented_return(mdp):
    """eq. 18 written out by hand for n = 3, uniform prior, and the on-policy IS identity (mu = pi_B gives c = 1)."""
    q = np.random.default_rng(1).normal(size=(5, 3))
    obs, act, rew = random_episode(mdp, 3, seed=5)
    gamma, tau = 0.8, 0.5
    log_pi = boltzmann_log_probs(q, tau)
    expected = rew[0] + gamma * (rew[1] - tau * (log_pi[obs[1], act[1]] + np.log(3)))
    expected += gamma**2 * (rew[2] - tau * (log_pi[obs[2], act[2]] + np.log(3))) + gamma**3 * soft_value(q[obs[3]], tau)
    assert n_step_soft_return(q, obs, act, rew, False, gamma, tau, 3, "boltzmann")[0] == pytest.approx(expected, abs=1e-12)
    on_policy = np.exp(log_pi[obs[:-1], act])
    np.testing.assert_allclose(
        multistep_soft_returns(q, obs, act, rew, False, gamma, tau, "importance_sampling", 1.0, 3, behaviour_probs=on_policy),
        multistep_soft_returns(q, obs, act, rew, False, gamma, tau, "boltzmann", 1.0, 3),
    )
    with pytest.raises(ValueError, match="behaviour_probs"):
        trace_coefficients(q, obs, act, tau, "importance_sampling")
    for kwargs, match in ((dict(gamma=1.5), "gamma"), (dict(ent_coef=0.0), "ent_coef"), (dict(ent_coef=-1.0), "ent_coef")):
        arguments = dict(gamma=gamma, ent_coef=tau) | kwargs
        with pytest.raises(ValueError, match=match):
            multistep_soft_returns(q, obs, act, rew, False, **arguments)
        with pytest.raises(ValueError, match=match):
            n_step_soft_return(q, obs, act, rew, False, n=2, **arguments)
    with pytest.raises(ValueError, match="trace_lambda"):
        trace_coefficients(q, obs, act, tau, "tree_backup", trace_lambda=7)
    negative_obs = np.array(obs)
    negative_obs[1] = -1  # NumPy indexing would wrap it silently
    with pytest.raises(ValueError, match="observations"):
        soft_td_errors(q, negative_obs, act, rew, False, gamma, tau)
    with pytest.raises(ValueError, match="actions"):
        soft_td_errors(q, obs, np.array(act) + q.shape[1], rew, False, gamma, tau)


# ---------------------------------------------------------------------------------------------------- backward view
def run_offline_episode(model, obs, act, rew, terminated, mu=None):
    for t in range(len(act)):
        last = t == len(act) - 1
        model.observe(
            obs[t], act[t], rew[t], obs[t + 1], terminated and last, (not terminated) and last, None if mu is None else mu[t]
        )


@pytest.mark.parametrize("terminated", [True, False])
@pytest.mark.parametrize("trace", ["boltzmann", "tree_backup"])
@pytest.mark.parametrize("trace_lambda", [0.0, 0.6, 1.0])
def test_backward_view_equals_forward_lambda_return(mdp, terminated, trace, trace_lambda):
    """Offline (frozen Q) sum of eligibility-trace updates = forward-view λ-return update (eq. 42 vs 43-48)."""
    rng = np.random.default_rng(0)
    q0 = rng.normal(size=(5, 3))
    prior = rng.dirichlet(np.ones(3), size=5)
    gamma, tau, alpha = 0.9, 0.4, 0.1
    obs, act, rew = random_episode(mdp, 12, seed=4)  # revisits states: accumulating traces matter
    env = TabularMDPEnv(mdp)
    model = TabularSoftQLambda(
        env, tau, prior, gamma, alpha, "lambda", trace, trace_lambda=trace_lambda, behaviour_policy="uniform", online=False
    )
    model.q_table[:] = q0
    run_offline_episode(model, obs, act, rew, terminated)

    lambda_returns = lambda_mixture(q0, obs, act, rew, terminated, gamma, tau, trace, trace_lambda, np.log(prior))
    expected = q0.copy()
    np.add.at(expected, (obs[:-1], act), alpha * (lambda_returns - q0[obs[:-1], act]))
    np.testing.assert_allclose(model.q_table, expected, atol=1e-8)
    # the TD-error form of the λ-return agrees as well
    np.testing.assert_allclose(
        multistep_soft_returns(q0, obs, act, rew, terminated, gamma, tau, trace, trace_lambda, None, np.log(prior)),
        lambda_returns,
        atol=1e-10,
    )


@pytest.mark.parametrize("trace", ["boltzmann", "tree_backup", "importance_sampling"])
@pytest.mark.parametrize("n", [1, 3, 20])
def test_online_n_step_updates_equal_n_step_returns(mdp, trace, n):
    """The learner's n-step updates (frozen Q) are the forward n-step returns of each step (eq. 23, 27, 36)."""
    rng = np.random.default_rng(1)
    q0 = rng.normal(size=(5, 3))
    gamma, tau, alpha = 0.95, 0.5, 0.2
    obs, act, rew = random_episode(mdp, 9, seed=6)
    mu = rng.uniform(0.2, 0.9, size=9)
    model = TabularSoftQLambda(TabularMDPEnv(mdp), tau, None, gamma, alpha, "n_step", trace, n=n, online=False)
    model.q_table[:] = q0
    run_offline_episode(model, obs, act, rew, True, mu)
    if trace == "importance_sampling":
        returns = multistep_soft_returns(q0, obs, act, rew, True, gamma, tau, trace, 1.0, n, behaviour_probs=mu)
        ratios = np.exp(boltzmann_log_probs(q0, tau)[obs[:-1], act]) / mu
        manual = q0[obs[0], act[0]] + sum(
            np.prod(gamma * ratios[1 : k + 1]) * soft_td_errors(q0, obs, act, rew, True, gamma, tau)[k]
            for k in range(min(n, 9))
        )
        assert returns[0] == pytest.approx(manual, abs=1e-12)
    else:
        returns = n_step_soft_return(q0, obs, act, rew, True, gamma, tau, n, trace)
    expected = q0.copy()
    np.add.at(expected, (obs[:-1], act), alpha * (returns - q0[obs[:-1], act]))
    np.testing.assert_allclose(model.q_table, expected, atol=1e-10)


@pytest.mark.parametrize("behaviour_policy", [None, "uniform"])
@pytest.mark.parametrize(
    "other", [dict(algorithm="lambda", trace_lambda=0.0), dict(algorithm="n_step", n=1, trace="importance_sampling")]
)
def test_lambda_zero_and_one_step_window_are_one_step_soft_q(mdp, behaviour_policy, other):
    def learned(**kwargs):
        env = TabularMDPEnv(mdp, max_episode_steps=10)
        model = TabularSoftQLambda(
            env, ent_coef=0.5, gamma=0.9, learning_rate=0.3, behaviour_policy=behaviour_policy, seed=3, **kwargs
        )
        return model.learn(600)

    one_step, model = learned(algorithm="one_step"), learned(**other)
    np.testing.assert_allclose(model.q_table, one_step.q_table, atol=1e-12)
    np.testing.assert_allclose(model.td_errors, one_step.td_errors, atol=1e-12)


def test_termination_does_not_bootstrap_truncation_does(mdp):
    model = TabularSoftQLambda(
        TabularMDPEnv(mdp), ent_coef=0.5, gamma=0.9, learning_rate=1.0, trace="boltzmann", trace_lambda=1.0
    )
    q0 = np.random.default_rng(0).normal(size=(5, 3))
    model.q_table[:] = q0
    assert model.observe(0, 1, 2.0, 3, terminated=True) == pytest.approx(2.0 - q0[0, 1])
    assert model.q_table[0, 1] == pytest.approx(2.0)
    delta = model.observe(1, 2, 0.5, 4, terminated=False, truncated=True)
    assert delta == pytest.approx(0.5 + 0.9 * soft_value(q0[4], 0.5) - q0[1, 2])
    # each of those ended an episode: traces start empty, so the next step updates its own pair only
    before = model.q_table.copy()
    model.observe(2, 0, 1.0, 2, terminated=False)
    changed = np.argwhere(model.q_table != before)
    np.testing.assert_array_equal(changed, [[2, 0]])
    np.testing.assert_array_equal(model.td_episode_index, [0, 1, 2])
    np.testing.assert_allclose(model.episode_returns, [2.0, 0.5])


def test_replacing_traces(mdp):
    model = TabularSoftQLambda(
        TabularMDPEnv(mdp), ent_coef=0.5, gamma=1.0, trace="boltzmann", trace_lambda=1.0, trace_type="replacing"
    )
    for _ in range(3):
        model.observe(0, 0, 0.0, 0, terminated=False)
    assert model.traces[0, 0] == 1.0
    accumulating = TabularSoftQLambda(TabularMDPEnv(mdp), ent_coef=0.5, gamma=1.0, trace="boltzmann", trace_lambda=1.0)
    for _ in range(3):
        accumulating.observe(0, 0, 0.0, 0, terminated=False)
    assert accumulating.traces[0, 0] == 3.0


# ---------------------------------------------------------------------------------------------------- API
class DiscreteObsBoxActionEnv(gym.Env):
    observation_space = spaces.Discrete(3)
    action_space = spaces.Box(-1, 1, (1,))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(ent_coef=0.0), "ent_coef"),
        (dict(ent_coef=-1.0), "ent_coef"),
        (dict(gamma=1.5), "gamma"),
        (dict(learning_rate=0.0), "learning_rate"),
        (dict(algorithm="sarsa"), "algorithm"),
        (dict(trace="retrace"), "trace"),
        (dict(trace="importance_sampling"), "importance_sampling"),
        (dict(trace_lambda=1.5), "trace_lambda"),
        (dict(trace_lambda=-0.1), "trace_lambda"),
        (dict(algorithm="one_step", trace_lambda=0.5), "trace_lambda"),
        (dict(algorithm="n_step", n=0), "n must be"),
        (dict(n=3), "n is only used"),
        (dict(trace_type="dutch"), "trace_type"),
        (dict(algorithm="n_step", trace_type="replacing"), "trace_type"),
        (dict(behaviour_policy="greedy"), "behaviour_policy"),
        (dict(behaviour_policy=1.5), "behaviour_policy"),
        (dict(reference_policy=[0.5, 0.5]), "reference_policy"),
        (dict(reference_policy=[0.5, 0.6, -0.1]), "reference_policy"),
        (dict(reference_policy=[0.2, 0.2, 0.2]), "reference_policy"),
        (dict(reference_policy=np.full((4, 3), 1 / 3)), "reference_policy"),
    ],
)
def test_bad_arguments(mdp, kwargs, match):
    with pytest.raises(ValueError, match=match):
        TabularSoftQLambda(TabularMDPEnv(mdp), **kwargs)


def test_bad_types_and_spaces(mdp):
    with pytest.raises(TypeError, match="learning_rate"):
        TabularSoftQLambda(TabularMDPEnv(mdp), learning_rate="fast")
    with pytest.raises(TypeError, match="behaviour_policy"):
        TabularSoftQLambda(TabularMDPEnv(mdp), behaviour_policy=[0.5, 0.5])
    with pytest.raises(ValueError, match="Discrete observation"):
        TabularSoftQLambda(TabularMDPEnv(mdp, one_hot=True))
    with pytest.raises(ValueError, match="Discrete action"):
        TabularSoftQLambda(DiscreteObsBoxActionEnv())
    model = TabularSoftQLambda(TabularMDPEnv(mdp), behaviour_policy=lambda obs, q: np.ones(3))
    with pytest.raises(ValueError, match="behaviour_policy"):
        model.learn(5)
    with pytest.raises(ValueError, match="observation"):
        model.predict(7)
    for behaviour_prob in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="behaviour_prob"):
            TabularSoftQLambda(TabularMDPEnv(mdp)).observe(0, 0, 1.0, 1, False, behaviour_prob=behaviour_prob)


def test_behaviour_policies_and_predict(mdp):
    env = TabularMDPEnv(mdp)
    q = np.array([[1.0, 3.0, 3.0], [0.0, 0.0, 5.0], [1.0, 2.0, 0.0], [0, 0, 0], [2.0, 1.0, 0.0]])
    model = TabularSoftQLambda(env, ent_coef=1.0, behaviour_policy=0.3, seed=0)
    model.q_table[:] = q
    np.testing.assert_allclose(model.behaviour_probs(0), [0.1, 0.45, 0.45])  # epsilon-greedy, ties shared
    model.behaviour_policy = "uniform"
    np.testing.assert_allclose(model.behaviour_probs(1), [1 / 3] * 3)
    model.behaviour_policy = None
    np.testing.assert_allclose(model.behaviour_probs(2), boltzmann_probs(q[2], 1.0))
    model.behaviour_policy = lambda obs, q_table: np.eye(3)[obs % 3]
    np.testing.assert_allclose(model.behaviour_probs(4), [0, 1, 0])
    np.testing.assert_allclose(model.boltzmann_policy(), boltzmann_probs(q, 1.0))
    np.testing.assert_allclose(model.soft_values(), soft_value(q, 1.0))

    action, state = model.predict(1, deterministic=True)
    assert action == 2 and isinstance(action, int) and state is None
    actions, _ = model.predict(np.array([0, 1, 2, 4]), deterministic=True)
    np.testing.assert_array_equal(actions, [1, 2, 1, 0])
    samples, _ = model.predict(np.full(20_000, 2))
    np.testing.assert_allclose(np.bincount(samples, minlength=3) / 20_000, boltzmann_probs(q[2], 1.0), atol=0.02)


def test_learn_counters_schedule_and_determinism(mdp):
    progress = []

    def schedule(progress_remaining: float) -> float:
        progress.append(progress_remaining)
        return 0.1

    def learned(seed):
        model = TabularSoftQLambda(
            TabularMDPEnv(mdp, max_episode_steps=7), learning_rate=schedule, behaviour_policy="uniform", seed=seed
        )
        return model.learn(100)

    model = learned(0)
    assert model.num_timesteps == 100 and model.num_episodes == 14 and len(model.td_errors) == 100
    assert progress[0] == 1.0 and progress[99] == pytest.approx(0.01)
    np.testing.assert_array_equal(model.td_episode_index, np.arange(100) // 7)
    np.testing.assert_array_equal(model.episode_lengths, [7] * 14)
    assert model.visit_counts.sum() == 100
    np.testing.assert_array_equal(learned(0).q_table, model.q_table)
    assert not np.array_equal(learned(1).q_table, model.q_table)
    model.learn(50, reset_num_timesteps=False)  # continues the running episode
    assert model.num_timesteps == 150 and len(model.td_errors) == 150 and model.num_episodes == 21
    model.learn(3)  # cuts the running episode (3 of 7 steps) short and starts a new one
    np.testing.assert_array_equal(model.td_episode_index[-6:], [21, 21, 21, 22, 22, 22])
    assert model.num_timesteps == 3 and model.episode_lengths[-1] == 3


def test_cut_episode_makes_its_pending_n_step_updates(mdp):
    """An episode cut short by a new learn() is treated as truncated: its pending n-step updates are made."""
    transitions = [(0, 1, 1.0, 2), (2, 0, 0.5, 4)]

    def observed(truncate_last: bool) -> TabularSoftQLambda:
        model = TabularSoftQLambda(TabularMDPEnv(mdp), ent_coef=0.5, algorithm="n_step", n=3, learning_rate=0.5, seed=0)
        for i, (obs, action, reward, next_obs) in enumerate(transitions):
            model.observe(obs, action, reward, next_obs, terminated=False, truncated=truncate_last and i == 1)
        return model

    truncated, cut = observed(truncate_last=True), observed(truncate_last=False)
    assert not cut.q_table.any()  # a window of 2 < n steps: nothing updated yet
    cut.learn(1)  # one step of a new episode: too short for an update of its own
    np.testing.assert_array_equal(cut.q_table, truncated.q_table)
    assert np.count_nonzero(cut.q_table) == 2
    assert cut.episode_lengths.tolist() == [2]


def test_schedules_belong_to_learn(mdp):
    model = TabularSoftQLambda(TabularMDPEnv(mdp), learning_rate=lambda progress_remaining: 0.1 * progress_remaining)
    with pytest.raises(ValueError, match="schedule over the steps of learn"):
        model.observe(0, 0, 1.0, 1, terminated=False)
    model.learn(10)
    with pytest.raises(ValueError, match=r"model\.learning_rate = 0\.1"):
        model.observe(0, 0, 1.0, 1, terminated=False)
    model.learning_rate = 0.1
    model.observe(0, 0, 1.0, 1, terminated=False)
    with pytest.raises(TypeError, match="learning_rate"):
        TabularSoftQLambda(TabularMDPEnv(mdp), learning_rate=None)


def test_forward_views_check_their_inputs(mdp):
    q = np.random.default_rng(0).normal(size=(mdp.n_states, mdp.n_actions))
    obs, act, rew = random_episode(mdp, 2, seed=0)
    for behaviour_probs in ([0.5], [0.5, 0.0], [0.5, 1.5]):  # one for two actions, a zero, above 1
        with pytest.raises(ValueError, match="behaviour_probs"):
            multistep_soft_returns(q, obs, act, rew, False, 0.9, 0.5, "importance_sampling", behaviour_probs=behaviour_probs)
    with pytest.raises(ValueError, match="actions"):
        trace_coefficients(q, obs, 1, 0.5)
    with pytest.raises(ValueError, match="T \\+ 1 observations"):
        soft_td_errors(q, obs, 1, 1.0, False, 0.9, 0.5)
    # An episode of no steps has no returns, terminated or not
    for terminated in (True, False):
        assert soft_td_errors(q, [3], [], [], terminated, 0.9, 0.5).shape == (0,)
        assert multistep_soft_returns(q, [3], [], [], terminated, 0.9, 0.5).shape == (0,)


def test_save_load(tmp_path, mdp):
    env = TabularMDPEnv(mdp, max_episode_steps=10)
    prior = np.array([0.2, 0.3, 0.5])
    model = TabularSoftQLambda(
        env,
        ent_coef=0.3,
        reference_policy=prior,
        gamma=0.8,
        learning_rate=np.float32(0.05),  # NumPy numbers are saved as JSON too
        algorithm="n_step",
        trace="importance_sampling",
        n=4,
        trace_lambda=0.7,
        behaviour_policy=np.float64(0.2),
        seed=np.int64(5),
    )
    model.learn(300)
    model.save(tmp_path / "model")
    loaded = TabularSoftQLambda.load(tmp_path / "model.npz")
    for name in (
        "ent_coef",
        "gamma",
        "learning_rate",
        "algorithm",
        "trace",
        "n",
        "trace_lambda",
        "trace_type",
        "behaviour_policy",
        "online",
        "seed",
        "num_timesteps",
        "num_episodes",
    ):
        assert getattr(loaded, name) == getattr(model, name), name
    for name in (
        "q_table",
        "reference_policy",
        "log_prior",
        "traces",
        "visit_counts",
        "td_errors",
        "td_episode_index",
        "episode_returns",
        "episode_lengths",
    ):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(model, name), err_msg=name)
    # predictions match exactly, including sampled ones (the random state is saved)
    np.testing.assert_array_equal(
        loaded.predict(np.arange(5), deterministic=True)[0], model.predict(np.arange(5), deterministic=True)[0]
    )
    np.testing.assert_array_equal(loaded.predict(np.arange(5).repeat(20))[0], model.predict(np.arange(5).repeat(20))[0])
    with pytest.raises(ValueError, match="env"):
        loaded.learn(10)
    loaded.set_env(TabularMDPEnv(mdp, max_episode_steps=10))
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == 400
    with pytest.raises(ValueError, match="states and actions"):
        loaded.set_env(TabularMDPEnv(random_mdp(4, 3)))


def test_save_load_callables_must_be_passed_again(tmp_path, mdp):
    model = TabularSoftQLambda(
        TabularMDPEnv(mdp), learning_rate=lambda p: 0.1 * p, behaviour_policy=lambda obs, q: np.full(3, 1 / 3), seed=0
    ).learn(50)
    model.save(tmp_path / "model.npz")
    with pytest.warns(UserWarning, match="learning_rate"):
        loaded = TabularSoftQLambda.load(tmp_path / "model.npz", TabularMDPEnv(mdp), behaviour_policy="uniform")
    np.testing.assert_array_equal(loaded.q_table, model.q_table)
    with pytest.raises(ValueError, match="learning_rate was a callable"):
        loaded.learn(10)
    loaded.learning_rate = 0.05
    loaded.learn(10)
    with pytest.warns(UserWarning, match="behaviour_policy"):
        loaded = TabularSoftQLambda.load(tmp_path / "model", TabularMDPEnv(mdp), learning_rate=lambda p: 0.1)
    with pytest.raises(ValueError, match="behaviour_policy was a callable"):
        loaded.learn(10)
    again = TabularSoftQLambda.load(tmp_path / "model", TabularMDPEnv(mdp), lambda p: 0.1, lambda obs, q: np.full(3, 1 / 3))
    again.learn(10)


# ---------------------------------------------------------------------------------------------------- packaging, docs
BLOCK_TORCH = (
    "import sys, types\n"
    "class Block:\n"
    "    def find_spec(self, name, path=None, target=None):\n"
    "        if name.split('.')[0] in ('torch', 'stable_baselines3'):\n"
    "            raise ImportError('blocked ' + name)\n"
    "sys.meta_path.insert(0, Block())\n"
)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_tabular_package_does_not_import_torch():
    """The tabular modules need only NumPy and gymnasium (the parent package's own imports are bypassed here)."""
    code = BLOCK_TORCH + (
        f"parent = types.ModuleType('sb3_softq'); parent.__path__ = [{str(ROOT / 'sb3_softq')!r}]\n"
        "sys.modules['sb3_softq'] = parent\n"
        "import sb3_softq.tabular as tabular\n"
        "tabular.TabularSoftQLambda(tabular.TabularMDPEnv(tabular.random_mdp(3, 2)), seed=0).learn(10)\n"
        "assert 'torch' not in sys.modules\n"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr


def test_import_sb3_softq_tabular_without_torch():
    result = run_python(BLOCK_TORCH + "import sb3_softq.tabular\nassert 'torch' not in sys.modules\n")
    assert result.returncode == 0, result.stderr


def test_docs_example_runs(tmp_path):
    script = ROOT / "docs" / "examples" / "tabular_frozenlake.py"
    assert "examples/tabular_frozenlake.py" in (ROOT / "docs" / "tabular.md").read_text()
    output = tmp_path / "td_errors.png"
    result = subprocess.run(
        [sys.executable, str(script), "--timesteps", "5000", "--output", str(output)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1", "MPLCONFIGDIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    assert "max |Q - Q*|" in result.stdout
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
