"""
The modules the tabular learner is made of: loop twins of the vectorised functions, the names kept importable from
their old places, and a fixed-seed regression of the learner (numbers recorded before it was split into modules).
"""

import math

import numpy as np
import pytest

from sb3_softq.tabular import TabularMDPEnv, TabularSoftQLambda, boltzmann_log_probs, random_mdp, soft_value
from sb3_softq.tabular.history import LearningHistory
from sb3_softq.tabular.options import check_behaviour_prob, check_options
from sb3_softq.tabular.policies import behaviour_probs_row, sample_action, sample_actions
from sb3_softq.tabular.soft import soft_value_and_log_probs_row
from sb3_softq.tabular.traces import trace_coefficient


@pytest.mark.parametrize("ent_coef", [1e-4, 0.1, 1.0, 1e3])
def test_soft_row_equals_the_vectorised_soft_value_and_log_probs(ent_coef):
    rng = np.random.default_rng(0)
    for scale in (1.0, 1e4):
        q = scale * rng.normal(size=(20, 4))
        log_prior = np.log(rng.dirichlet(np.ones(4), size=20))
        values = soft_value(q, ent_coef, log_prior)
        log_probs = boltzmann_log_probs(q, ent_coef, log_prior)
        for state in range(20):
            value, row = soft_value_and_log_probs_row(q[state].tolist(), ent_coef, log_prior[state].tolist())
            assert value == pytest.approx(values[state], rel=1e-12, abs=1e-12)
            np.testing.assert_allclose(row, log_probs[state], rtol=1e-12, atol=1e-12)


def test_sample_action_loop_equals_sample_actions():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4), size=500)
    probs[::3, 1] = 0.0  # actions of probability 0 are never drawn
    probs[::7, 3] = 0.0
    probs /= probs.sum(axis=-1, keepdims=True)
    uniform = rng.random((500, 1))
    uniform[:5] = 0.0
    uniform[5:10] = np.nextafter(1.0, 0.0)
    vectorised = sample_actions(probs, uniform)
    loop = [sample_action(row.tolist(), float(u[0])) for row, u in zip(probs, uniform, strict=True)]
    np.testing.assert_array_equal(vectorised, loop)
    assert np.all(probs[np.arange(500), vectorised] > 0)
    # Frequencies follow the probabilities
    draws = sample_actions(np.tile([0.2, 0.5, 0.3], (20_000, 1)), rng.random((20_000, 1)))
    np.testing.assert_allclose(np.bincount(draws) / 20_000, [0.2, 0.5, 0.3], atol=0.015)


def test_behaviour_probs_rows():
    q = np.array([[1.0, 3.0, 3.0], [0.0, 0.0, 5.0]])
    assert behaviour_probs_row("uniform", 0, q) == [1 / 3] * 3
    np.testing.assert_allclose(behaviour_probs_row(0.3, 0, q), [0.1, 0.45, 0.45])
    np.testing.assert_allclose(behaviour_probs_row(0.0, 1, q), [0.0, 0.0, 1.0])
    np.testing.assert_allclose(
        behaviour_probs_row(lambda obs, table: table[obs] / table[obs].sum(), 0, q), [1 / 7, 3 / 7, 3 / 7]
    )
    with pytest.raises(ValueError, match="behaviour_policy"):
        behaviour_probs_row(lambda obs, table: [0.5, 0.6, 0.1], 0, q)
    with pytest.raises(ValueError, match="behaviour_policy=None"):
        behaviour_probs_row(None, 0, q)


def test_trace_coefficient_of_floats_and_arrays():
    probs, mu = np.array([0.2, 0.9]), np.array([0.5, 0.3])
    for trace in ("tree_backup", "boltzmann", "importance_sampling"):
        array = trace_coefficient(trace, 0.7, probs, mu)
        assert isinstance(array, np.ndarray) and array.shape == (2,)
        assert [trace_coefficient(trace, 0.7, float(p), float(m)) for p, m in zip(probs, mu, strict=True)] == array.tolist()
    with pytest.raises(ValueError, match="behaviour_probs"):
        trace_coefficient("importance_sampling", 0.7, probs)
    with pytest.raises(ValueError, match="trace"):
        trace_coefficient("retrace", 0.7, probs, mu)


def test_option_checks_kept_from_before_the_split():
    valid = dict(ent_coef=0.1, gamma=0.9, learning_rate=0.1, algorithm="n_step", trace="tree_backup", n=2)
    check_options(**valid, trace_lambda=None, trace_type="accumulating")
    for name, value, error in (
        ("ent_coef", math.inf, ValueError),
        ("ent_coef", float("nan"), ValueError),
        ("ent_coef", True, ValueError),
        ("n", 2.0, ValueError),  # integers only
        ("learning_rate", "fast", TypeError),
        ("learning_rate", -1.0, ValueError),
    ):
        with pytest.raises(error, match=name):
            check_options(**(valid | {name: value}), trace_lambda=None, trace_type="accumulating")
    assert check_behaviour_prob(np.float32(0.5)) == 0.5
    for value in (0.0, 1.5, "0.5", None):
        with pytest.raises(ValueError, match="behaviour_prob"):
            check_behaviour_prob(value)


def test_history_round_trip():
    history = LearningHistory()
    for episode, (td_error, reward) in enumerate([(0.5, 1.0), (-0.25, 2.0)]):
        history.start_episode()
        history.record_step(td_error, episode, reward)
        history.record_step(td_error, episode, reward)
        history.end_episode()
    again = LearningHistory.from_arrays(history.arrays())
    for name in LearningHistory.ARRAY_NAMES:
        np.testing.assert_array_equal(getattr(again, name), getattr(history, name))
    np.testing.assert_array_equal(history.episode_returns, [2.0, 4.0])
    np.testing.assert_array_equal(history.episode_lengths, [2, 2])
    np.testing.assert_array_equal(history.td_episode_index, [0, 0, 1, 1])


def test_names_importable_from_their_old_modules():
    from sb3_softq.tabular import learner, returns
    from sb3_softq.tabular.learner import BehaviourCallable, Schedule  # noqa: F401 (importable as before)
    from sb3_softq.tabular.options import ALGORITHMS, TRACE_TYPES
    from sb3_softq.tabular.traces import TRACES

    assert learner.ALGORITHMS == ALGORITHMS == ("one_step", "n_step", "lambda")
    assert learner.TRACE_TYPES == TRACE_TYPES == ("accumulating", "replacing")
    assert learner.TRACES is returns.TRACES is TRACES
    assert set(TRACES) == {"boltzmann", "importance_sampling", "tree_backup"}


# Recorded from the learner before its split into modules (same seeds, same numbers): sum of Q, a weighted sum of Q,
# sum of the TD errors, and a checksum of the sampled actions of predict().
REGRESSION = {
    "one_step": [66.55405910140834, 38.054446958156774, 332.77029550704174, 30],
    "n_step_importance_sampling": [92.39991535054637, 53.30656245870065, 265.74047318734995, 30],
    "n_step_boltzmann_offline": [15.262512471477082, 8.705488787752271, 49.361150849383904, 34],
    "lambda_tree_backup": [79.93633065410427, 45.78483837114293, 309.8378495535601, 30],
    "lambda_boltzmann_replacing": [64.24755942222605, 37.22577713252823, 194.6475789979045, 32],
}
CONFIGS = {
    "one_step": dict(algorithm="one_step", behaviour_policy="uniform"),
    "n_step_importance_sampling": dict(algorithm="n_step", n=3, trace="importance_sampling", behaviour_policy=0.3),
    "n_step_boltzmann_offline": dict(algorithm="n_step", n=2, trace="boltzmann", online=False, reference="table"),
    "lambda_tree_backup": dict(algorithm="lambda", trace="tree_backup", trace_lambda=0.8, behaviour_policy="uniform"),
    "lambda_boltzmann_replacing": dict(algorithm="lambda", trace="boltzmann", trace_type="replacing", reference="vector"),
}


@pytest.mark.parametrize("name", sorted(REGRESSION))
def test_fixed_seed_regression(name):
    kwargs = dict(CONFIGS[name])
    reference = kwargs.pop("reference", None)
    priors = {None: None, "vector": np.array([0.2, 0.3, 0.5]), "table": np.random.default_rng(1).dirichlet(np.ones(3), 6)}
    env = TabularMDPEnv(random_mdp(6, 3, seed=4), max_episode_steps=8)
    model = TabularSoftQLambda(
        env, ent_coef=0.4, gamma=0.9, learning_rate=0.2, reference_policy=priors[reference], seed=5, **kwargs
    )
    model.learn(400)
    model.learn(60, reset_num_timesteps=False)
    weights = np.arange(1, 19).reshape(6, 3) / 18
    q_sum, q_weighted, td_sum, actions = REGRESSION[name]
    assert float(model.q_table.sum()) == pytest.approx(q_sum, rel=1e-12)
    assert float((weights * model.q_table).sum()) == pytest.approx(q_weighted, rel=1e-12)
    assert float(model.td_errors.sum()) == pytest.approx(td_sum, rel=1e-12)
    assert int(model.predict(np.arange(6))[0] @ np.arange(1, 7)) == actions


def test_mdp_and_forward_view_sizes_are_checked():
    from sb3_softq.tabular import multistep_soft_returns, n_step_soft_return

    for kwargs, name in ((dict(n_states=0), "n_states"), (dict(n_actions=1.5), "n_actions"), (dict(branching=9), "branching")):
        with pytest.raises(ValueError, match=name):
            random_mdp(**(dict(n_states=4, n_actions=2) | kwargs))
    with pytest.raises(ValueError, match="max_episode_steps"):
        TabularMDPEnv(random_mdp(4, 2), max_episode_steps=0)
    q, obs, act, rew = np.zeros((4, 2)), [0, 1, 2], [0, 1], [1.0, 0.0]
    for n in (0, True, 1.5):
        with pytest.raises(ValueError, match="`n`"):
            multistep_soft_returns(q, obs, act, rew, False, 0.9, 0.5, n=n)
        with pytest.raises(ValueError, match="`n`"):
            n_step_soft_return(q, obs, act, rew, False, 0.9, 0.5, n=n)
    np.testing.assert_array_equal(multistep_soft_returns(q, obs, act, rew, True, 0.9, 0.5, n=np.int64(1)), rew)
