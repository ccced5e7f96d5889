"""
Property tests (hypothesis) of the sequence replay buffer: random sequences of adds (random terminated / truncated
flags, 1 to 3 envs, buffers that wrap around several times), then windows checked against the log of what was added.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_sequence_buffer import check_against_reference, create_buffer, fill_buffer, stored_steps


@st.composite
def filled_buffers(draw):
    buffer_size = draw(st.integers(2, 8))
    n_envs = draw(st.integers(1, 3))
    sequence_length = draw(st.integers(1, 6))
    length = draw(st.integers(1, 5 * buffer_size))  # up to four wrap-arounds
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    p_end = draw(st.sampled_from([0.0, 0.15, 0.5]))
    done = rng.random((length, n_envs)) < p_end / 2
    truncated = rng.random((length, n_envs)) < p_end / 2
    buffer = create_buffer(buffer_size=buffer_size, sequence_length=sequence_length, n_envs=n_envs)
    log = fill_buffer(buffer, length, done_at=done, truncated_at=truncated, n_envs=n_envs)
    return buffer, log, length


@settings(max_examples=80, deadline=None)
@given(case=filled_buffers())
def test_windows_from_every_stored_step_match_the_log(case):
    buffer, log, length = case
    check_against_reference(buffer, log, length)


@settings(max_examples=80, deadline=None)
@given(case=filled_buffers(), batch_size=st.integers(1, 16), seed=st.integers(0, 2**32 - 1))
def test_sampled_windows_respect_the_write_head_and_episode_ends(case, batch_size, seed):
    """Invariants of ``sample()`` read off the observations (step ``i`` of env ``e`` is ``[i, e]``)."""
    buffer, log, length = case
    np.random.seed(seed % 2**32)
    samples = buffer.sample(batch_size)
    stored = set(stored_steps(length, buffer.buffer_size))
    obs = samples.observations.numpy()
    next_obs = samples.next_observations.numpy()
    valid = samples.valid.numpy().astype(bool)
    continues = samples.continues.numpy()
    sequence_length = buffer.sequence_length
    for row in range(batch_size):
        steps, envs = obs[row, :, 0].astype(int), obs[row, :, 1].astype(int)
        env = envs[0]
        assert valid[row, 0]  # windows start at a stored step
        assert continues[row, -1] == 0
        for t in range(sequence_length):
            if not valid[row, t]:
                # past the newest step: every later position is invalid too, and nothing continues into it
                assert not valid[row, t:].any()
                assert t == 0 or continues[row, t - 1] == 0
                break
            step = steps[t]
            # no window reads the write head or a slot never written: every valid step is a stored one, in order
            assert step in stored and envs[t] == env and step == steps[0] + t
            ended = bool(log["ended"][step, env])
            assert samples.terminated[row, t] == log["terminated"][step, env]
            assert samples.truncated[row, t] == log["truncated"][step, env]
            assert samples.rewards[row, t] == log["rewards"][step, env]
            assert samples.actions[row, t] == log["actions"][step, env]
            # the episode boundary is marked: no continuation past the last step of an episode
            next_valid = t + 1 < sequence_length and valid[row, t + 1]
            assert continues[row, t] == float(next_valid and not ended)
            # next observation: the following slot's observation, or the true terminal observation
            if ended:
                np.testing.assert_array_equal(next_obs[row, t], [step + 1, env + 10])
            else:
                np.testing.assert_array_equal(next_obs[row, t], [step + 1, env])
                if next_valid:
                    np.testing.assert_array_equal(next_obs[row, t], obs[row, t + 1])


@pytest.mark.parametrize("probs", [np.nan, np.inf, -np.inf, 0.0, -0.2, 1.5])
def test_add_refuses_bad_behaviour_probs(probs):
    buffer = create_buffer(n_envs=2)
    obs = np.ones((2, 2), dtype=np.float32)
    with pytest.raises(ValueError, match=r"`behaviour_probs` must be probabilities in \(0, 1\]"):
        buffer.add(obs, obs, np.zeros(2), np.zeros(2), np.zeros(2), [{}, {}], behaviour_probs=np.array([0.5, probs]))
    assert buffer.pos == 0 and not buffer.full  # refused before anything is written
    np.testing.assert_array_equal(buffer.observations[0], 0.0)
    buffer.add(obs, obs, np.zeros(2), np.zeros(2), np.zeros(2), [{}, {}], behaviour_probs=np.array([0.5, 1.0]))
    assert buffer.pos == 1
