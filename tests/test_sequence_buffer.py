import time

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.save_util import load_from_pkl, save_to_pkl
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_softq.common.buffers import DictSequenceReplayBuffer, SequenceReplayBuffer, SequenceReplayBufferSamples

N_ACTIONS = 5
OBS_SPACE = spaces.Box(low=-np.inf, high=np.inf, shape=(2,), dtype=np.float32)
DICT_OBS_SPACE = spaces.Dict(
    {
        "vec": spaces.Box(low=-np.inf, high=np.inf, shape=(2,), dtype=np.float32),
        "img": spaces.Box(low=0, high=255, shape=(2, 2, 1), dtype=np.uint8),
        "disc": spaces.Discrete(1000),
    }
)


def create_buffer(buffer_size=10, sequence_length=3, n_envs=1, dict_obs=False, **kwargs):
    buffer_class = DictSequenceReplayBuffer if dict_obs else SequenceReplayBuffer
    return buffer_class(
        buffer_size=buffer_size * n_envs,
        observation_space=DICT_OBS_SPACE if dict_obs else OBS_SPACE,
        action_space=spaces.Discrete(N_ACTIONS),
        device="cpu",
        n_envs=n_envs,
        sequence_length=sequence_length,
        **kwargs,
    )


def box_obs(pairs):
    """Observation ``[step, env]`` as a Box(2,) observation (any leading dimensions)."""
    return np.asarray(pairs, dtype=np.float32)


def dict_obs(pairs):
    """The same ``[step, env]`` pair spread over the keys of ``DICT_OBS_SPACE``."""
    pairs = np.asarray(pairs)
    code = 3 * pairs[..., 0] + pairs[..., 1]
    return {
        "vec": pairs.astype(np.float32),
        "img": np.broadcast_to((code % 256)[..., None, None, None], (*pairs.shape[:-1], 2, 2, 1)).astype(np.uint8),
        "disc": (pairs[..., 0] + pairs[..., 1]).astype(np.int64),
    }


def step_flags(flag_at, length, n_envs):
    """``[length, n_envs]`` booleans from ``None``, a step index, several step indices (all envs) or boolean flags."""
    if isinstance(flag_at, np.ndarray):
        return flag_at.astype(bool).reshape(length, n_envs)
    flags = np.zeros((length, n_envs), dtype=bool)
    if flag_at is not None:
        for step in np.atleast_1d(flag_at):
            if step < length:
                flags[step] = True
    return flags


def fill_buffer(buffer, length, done_at=None, truncated_at=None, n_envs=1, make_obs=box_obs, with_probs=True, start=0):
    """
    Fill the buffer with recognisable values, as SB3's collection would (``done`` for both kinds of episode end,
    ``TimeLimit.truncated`` for time limits, the true final observation as ``next_obs`` of an ended episode):

    - observation of step ``i`` of env ``e`` = ``[i, e]``; the reset observation after an episode end is ``[i + 1, e]``
      and the true final observation (``next_obs`` of the end step) is ``[i + 1, e + 10]``
    - reward = ``i + 100 * e``, action = ``(i + e) % N_ACTIONS``, behaviour probability = ``1 / (i + 2)``
    - episode ends (terminated) at ``done_at`` and truncations at ``truncated_at`` (rows of this call)
    - steps are numbered from ``start``, to continue filling a buffer

    :return: the reference log of every added step, arrays ``[length, n_envs, ...]``
    """
    done = step_flags(done_at, length, n_envs)
    truncated = step_flags(truncated_at, length, n_envs) & ~done
    ended = done | truncated
    steps = start + np.arange(length)[:, None] * np.ones((1, n_envs), dtype=np.int64)
    envs = np.arange(n_envs)[None, :] * np.ones((length, 1), dtype=np.int64)
    log = {
        "obs": np.stack([steps, envs], axis=-1),
        "next_obs": np.stack([steps + 1, envs + 10 * ended], axis=-1),
        "actions": (steps + envs) % N_ACTIONS,
        "rewards": (steps + 100 * envs).astype(np.float32),
        "terminated": done.astype(np.float32),
        "truncated": truncated.astype(np.float32),
        "ended": ended,
        "behaviour_probs": (1.0 / (steps + 2)).astype(np.float32) if with_probs else np.full((length, n_envs), np.nan),
    }
    probs = {} if isinstance(buffer, SequenceReplayBuffer) else None
    for i in range(length):
        if probs is not None:
            probs["behaviour_probs"] = log["behaviour_probs"][i] if with_probs else None
        infos = [{"TimeLimit.truncated": bool(truncated[i, e])} for e in range(n_envs)]
        if ended[i].any():
            for e in np.flatnonzero(ended[i]):
                infos[e]["terminal_observation"] = make_obs(log["next_obs"][i, e])
        buffer.add(
            make_obs(log["obs"][i]),
            make_obs(log["next_obs"][i]),
            log["actions"][i],
            log["rewards"][i],
            ended[i].astype(np.float32),
            infos,
            **(probs or {}),
        )
    return log


def stored_steps(length, buffer_size):
    """Step indices held by a buffer of ``buffer_size`` slots per env after ``length`` adds, oldest first."""
    if length < buffer_size:
        return list(range(length))
    return list(range(length - buffer_size + 1, length))


def reference_window(log, steps, first, env, sequence_length):
    """Plain-loop reference: walk the stored steps from ``first`` for ``sequence_length`` positions."""
    position = steps.index(first)
    window = {"valid": [], "continues": [], "steps": []}
    for t in range(sequence_length):
        valid = position + t < len(steps)
        step = steps[min(position + t, len(steps) - 1)]
        more = t + 1 < sequence_length and position + t + 1 < len(steps)
        window["valid"].append(float(valid))
        window["continues"].append(float(valid and more and not log["ended"][step, env]))
        window["steps"].append(step)
    return window


def check_against_reference(buffer, log, length, make_obs=box_obs):
    """Sample a window starting at every stored step of every env column and compare with the plain loop."""
    steps = stored_steps(length, buffer.buffer_size)
    starts = [(step, env) for step in steps for env in range(buffer.n_envs)]
    batch_inds = np.array([step % buffer.buffer_size for step, _ in starts])
    env_indices = np.array([env for _, env in starts])
    samples = buffer._get_samples(batch_inds, env_indices=env_indices)
    assert isinstance(samples, SequenceReplayBufferSamples)
    n_windows, seq_len = len(starts), buffer.sequence_length
    for field in ("actions", "rewards", "terminated", "truncated", "continues", "valid", "behaviour_probs"):
        assert getattr(samples, field).shape == (n_windows, seq_len), field
    assert samples.actions.dtype == th.long
    assert samples.rewards.dtype == th.float32

    for row, (first, env) in enumerate(starts):
        window = reference_window(log, steps, first, env, seq_len)
        np.testing.assert_array_equal(samples.valid[row].numpy(), window["valid"])
        np.testing.assert_array_equal(samples.continues[row].numpy(), window["continues"])
        valid = np.array(window["valid"], dtype=bool)
        ref_steps = np.array(window["steps"])[valid]
        expected = {key: value[ref_steps, env] for key, value in log.items()}
        for field in ("actions", "rewards", "terminated", "truncated", "behaviour_probs"):
            np.testing.assert_array_equal(getattr(samples, field)[row].numpy()[valid], expected[field], err_msg=field)
        for name in ("observations", "next_observations"):
            ref_pairs = expected["obs" if name == "observations" else "next_obs"]
            actual, reference = getattr(samples, name), make_obs(ref_pairs)
            if isinstance(actual, dict):
                for key, value in actual.items():
                    got = value[row].numpy()[valid]
                    np.testing.assert_array_equal(got, reference[key].reshape(got.shape), err_msg=f"{name}[{key}]")
            else:
                np.testing.assert_array_equal(actual[row].numpy()[valid], reference, err_msg=name)
        # Invalid positions hold finite values (behaviour probabilities may be NaN when never given)
        for field in ("actions", "rewards", "terminated", "truncated"):
            assert np.isfinite(getattr(samples, field)[row].numpy()).all()
    return samples


@pytest.mark.parametrize("length", [6, 10, 17])
@pytest.mark.parametrize("done_at", [None, 2, (1, 2, 15)])
@pytest.mark.parametrize("truncated_at", [None, 4, 9])
@pytest.mark.parametrize("sequence_length", [1, 3, 5])
def test_windows_match_reference(length, done_at, truncated_at, sequence_length):
    # buffer of 10 slots: not full (6), just full with the head at slot 0 (10), wrapped around (17);
    # windows start at every stored step (every base index)
    buffer = create_buffer(buffer_size=10, sequence_length=sequence_length)
    log = fill_buffer(buffer, length, done_at=done_at, truncated_at=truncated_at)
    check_against_reference(buffer, log, length)


def test_wrap_around_and_write_head():
    buffer = create_buffer(buffer_size=10, sequence_length=5)
    fill_buffer(buffer, 17)
    # steps 0..16 written, slots hold steps 10..16 (slots 0..6) and 8, 9 (slots 8, 9); slot 7 is the write head
    assert buffer.full and buffer.pos == 7
    samples = buffer._get_samples(np.array([8, 9, 5, 6]), env_indices=np.zeros(4, dtype=np.int64))
    obs = samples.observations[..., 0].numpy()
    # windows crossing the end of the arrays
    np.testing.assert_array_equal(obs[0], [8, 9, 10, 11, 12])
    np.testing.assert_array_equal(obs[1], [9, 10, 11, 12, 13])
    np.testing.assert_array_equal(samples.valid[:2].numpy(), np.ones((2, 5)))
    # windows reaching the write head: steps 15 and 16 are the newest, nothing past them is valid
    np.testing.assert_array_equal(samples.valid[2].numpy(), [1, 1, 0, 0, 0])
    np.testing.assert_array_equal(samples.continues[2].numpy(), [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(samples.valid[3].numpy(), [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(samples.continues[3].numpy(), [0, 0, 0, 0, 0])
    np.testing.assert_array_equal(samples.next_observations[2, :2, 0].numpy(), [16, 17])
    # sampled windows never start at the write head and never read its stale step (7)
    np.random.seed(0)
    samples = buffer.sample(2000)
    valid = samples.valid.numpy().astype(bool)
    assert valid[:, 0].all()
    steps = samples.observations[..., 0].numpy()[valid]
    assert steps.min() == 8 and steps.max() == 16
    assert set(np.unique(samples.observations[:, 0, 0].numpy())) == set(range(8, 17))


@pytest.mark.parametrize("length", [7, 10, 23])
@pytest.mark.parametrize("done_last", [False, True])
def test_newest_step(length, done_last):
    buffer = create_buffer(buffer_size=10, sequence_length=3)
    fill_buffer(buffer, length, done_at=length - 1 if done_last else None)
    newest = (buffer.pos - 1) % buffer.buffer_size
    samples = buffer._get_samples(np.array([newest]), env_indices=np.array([0]))
    assert samples.observations[0, 0, 0].item() == length - 1
    # its next observation was written ahead into the head slot, or kept as the final observation
    np.testing.assert_array_equal(samples.next_observations[0, 0].numpy(), [length, 10 if done_last else 0])
    np.testing.assert_array_equal(samples.valid[0].numpy(), [1, 0, 0])
    np.testing.assert_array_equal(samples.continues[0].numpy(), [0, 0, 0])
    assert samples.terminated[0, 0].item() == float(done_last)
    # and it is sampled
    np.random.seed(1)
    assert (buffer.sample(1000).observations[:, 0, 0] == length - 1).any()


@pytest.mark.parametrize("length", [6, 10, 17])
@pytest.mark.parametrize("use_dict_obs", [False, True])
@pytest.mark.parametrize("handle_timeout_termination", [True, False])
def test_truncate_last_trajectory(length, use_dict_obs, handle_timeout_termination):
    """After an env reset the next step starts a new episode: it must not continue the newest stored step, which
    keeps its true next observation (not full, just full, wrapped around; one env mid-episode, one just ended)."""
    make_obs = dict_obs if use_dict_obs else box_obs
    n_envs = 2
    buffer = create_buffer(
        buffer_size=10, n_envs=n_envs, dict_obs=use_dict_obs, handle_timeout_termination=handle_timeout_termination
    )
    ended_last = np.zeros((length, n_envs), dtype=bool)
    ended_last[-1, 1] = True  # env 1's episode ended at the newest step, env 0's was still running
    log = fill_buffer(buffer, length, done_at=ended_last, n_envs=n_envs, make_obs=make_obs)
    buffer.truncate_last_trajectory()
    buffer.truncate_last_trajectory()  # a second call changes nothing
    # New episodes from reset observations that were never seen before
    after = fill_buffer(buffer, 2, n_envs=n_envs, make_obs=make_obs, start=length + 50)

    # The reference: env 0's newest step ended as a truncation (also without timeout handling, which is about the env's
    # time limits), nothing else changed
    expected = {key: np.concatenate([log[key], after[key]]) for key in log}
    expected["ended"][length - 1, 0] = True
    expected["truncated"][length - 1, 0] = 1.0
    check_against_reference(buffer, expected, length + 2, make_obs=make_obs)
    newest = (length - 1) % buffer.buffer_size
    samples = buffer._get_samples(np.array([newest, newest]), env_indices=np.arange(n_envs))
    np.testing.assert_array_equal(samples.continues[:, 0].numpy(), [0, 0])
    np.testing.assert_array_equal(samples.valid.numpy(), np.ones((2, 3)))
    next_obs = samples.next_observations["vec"] if use_dict_obs else samples.next_observations
    np.testing.assert_array_equal(next_obs[:, 0].numpy(), [[length, 0], [length, 11]])  # the true next observations


def test_truncate_last_trajectory_of_an_empty_buffer():
    buffer = create_buffer()
    buffer.truncate_last_trajectory()
    assert buffer.pos == 0 and not buffer.dones.any() and buffer.n_steps_stored() == 0


def test_terminal_observations_recycled():
    n_envs, buffer_size, length = 2, 6, 61
    # env 0 ends an episode every 2 steps, env 1 every 3 steps (alternately terminated and truncated)
    done = np.zeros((length, n_envs), dtype=bool)
    truncated = np.zeros((length, n_envs), dtype=bool)
    done[1::4, 0] = truncated[3::4, 0] = True
    done[2::6, 1] = truncated[5::6, 1] = True
    buffer = create_buffer(buffer_size=buffer_size, sequence_length=4, n_envs=n_envs)
    logs, filled = [], 0
    for stage_end in (5, 6, 13, 29, length):
        # keep filling the same buffer, checking it after each stage (before and after wrapping around)
        rows = slice(filled, stage_end)
        logs.append(
            fill_buffer(
                buffer, stage_end - filled, done_at=done[rows], truncated_at=truncated[rows], n_envs=n_envs, start=filled
            )
        )
        filled = stage_end
        log = {key: np.concatenate([part[key] for part in logs]) for key in logs[0]}
        samples = check_against_reference(buffer, log, filled)
        # final observations are the true ones ([i + 1, e + 10]), never the reset observation
        ended = (samples.terminated + samples.truncated).numpy().astype(bool) & samples.valid.numpy().astype(bool)
        assert ended.any()
        np.testing.assert_array_equal(samples.next_observations.numpy()[ended][:, 1] >= 10, True)
    # the store is bounded: one entry per ended step still in the arrays, all others on the free list
    used = buffer.terminal_index[buffer.terminal_index >= 0]
    assert len(np.unique(used)) == len(used)
    n_ended_in_slots = int(np.logical_or(buffer.dones > 0, buffer.timeouts > 0).sum())
    assert len(used) == n_ended_in_slots
    capacity = len(buffer.terminal_observations)
    assert capacity <= buffer_size * n_envs
    assert sorted([*used.tolist(), *buffer._free_terminal_slots]) == list(range(capacity))


def test_terminated_vs_truncated():
    buffer = create_buffer(buffer_size=10, sequence_length=8)
    fill_buffer(buffer, 8, done_at=2, truncated_at=5)
    samples = buffer._get_samples(np.array([0]), env_indices=np.array([0]))
    np.testing.assert_array_equal(samples.terminated[0].numpy(), [0, 0, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(samples.truncated[0].numpy(), [0, 0, 0, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(samples.continues[0].numpy(), [1, 1, 0, 1, 1, 0, 1, 0])
    np.testing.assert_array_equal(samples.valid[0].numpy(), np.ones(8))
    np.testing.assert_array_equal(samples.next_observations[0, :, 1].numpy(), [0, 0, 10, 0, 0, 10, 0, 0])

    # without timeout handling, a time-limit end is a termination (as in SB3)
    buffer = create_buffer(buffer_size=10, sequence_length=8, handle_timeout_termination=False)
    fill_buffer(buffer, 8, done_at=2, truncated_at=5)
    samples = buffer._get_samples(np.array([0]), env_indices=np.array([0]))
    np.testing.assert_array_equal(samples.terminated[0].numpy(), [0, 0, 1, 0, 0, 1, 0, 0])
    np.testing.assert_array_equal(samples.truncated[0].numpy(), np.zeros(8))

    # a `TimeLimit.truncated` info without `done` (as in SB3's n-step tests) still ends the episode
    buffer = create_buffer(buffer_size=10, sequence_length=4)
    for i in range(4):
        buffer.add(box_obs([[i, 0]]), box_obs([[i + 1, 0]]), np.array([0]), np.array([1.0]), np.array([0.0]),
                   [{"TimeLimit.truncated": i == 1}])  # fmt: skip
    samples = buffer._get_samples(np.array([0]), env_indices=np.array([0]))
    np.testing.assert_array_equal(samples.truncated[0].numpy(), [0, 1, 0, 0])
    np.testing.assert_array_equal(samples.terminated[0].numpy(), np.zeros(4))
    np.testing.assert_array_equal(samples.continues[0].numpy(), [1, 0, 1, 0])
    np.testing.assert_array_equal(samples.next_observations[0, :, 0].numpy(), [1, 2, 3, 4])


def test_multiple_envs():
    n_envs, length = 3, 23
    rng = np.random.default_rng(0)
    done = rng.random((length, n_envs)) < 0.15
    truncated = rng.random((length, n_envs)) < 0.1
    buffer = create_buffer(buffer_size=10, sequence_length=4, n_envs=n_envs)
    assert buffer.buffer_size == 10
    log = fill_buffer(buffer, length, done_at=done, truncated_at=truncated, n_envs=n_envs)
    check_against_reference(buffer, log, length)
    # random windows never mix env columns and read consecutive steps
    np.random.seed(0)
    samples = buffer.sample(512)
    valid = samples.valid.numpy().astype(bool)
    obs = samples.observations.numpy()
    env_ids = obs[..., 1]
    assert (env_ids == env_ids[:, :1]).all()
    assert set(np.unique(env_ids)) == set(range(n_envs))
    steps = obs[..., 0]
    assert ((np.diff(steps, axis=1) == 1) | ~valid[:, 1:]).all()
    np.testing.assert_array_equal(samples.rewards.numpy()[valid], (steps + 100 * env_ids)[valid])


@pytest.mark.parametrize("length", [5, 14])
def test_dict_observations(length):
    n_envs = 2
    rng = np.random.default_rng(1)
    done = rng.random((length, n_envs)) < 0.2
    truncated = rng.random((length, n_envs)) < 0.1
    buffer = create_buffer(buffer_size=8, sequence_length=3, n_envs=n_envs, dict_obs=True)
    assert isinstance(buffer.observations, dict)
    assert buffer.observations["disc"].shape == (8, n_envs, 1)
    log = fill_buffer(buffer, length, done_at=done, truncated_at=truncated, n_envs=n_envs, make_obs=dict_obs)
    samples = check_against_reference(buffer, log, length, make_obs=dict_obs)
    assert set(samples.observations.keys()) == {"vec", "img", "disc"}
    assert samples.observations["img"].shape == (length_windows(length, 8, n_envs), 3, 2, 2, 1)
    assert samples.observations["img"].dtype == th.uint8
    np.random.seed(0)
    assert buffer.sample(16).next_observations["vec"].shape == (16, 3, 2)


def length_windows(length, buffer_size, n_envs):
    return len(stored_steps(length, buffer_size)) * n_envs


def test_vec_normalize():
    env = VecNormalize(DummyVecEnv([lambda: gym.make("MountainCar-v0")]), clip_obs=100.0, clip_reward=4.0)
    env.obs_rms.mean = np.array([1.0, 0.5])
    env.obs_rms.var = np.array([4.0, 2.0])
    env.ret_rms.var = np.array(9.0)
    buffer = create_buffer(buffer_size=10, sequence_length=4)
    fill_buffer(buffer, 13, done_at=3, truncated_at=8)

    np.random.seed(3)
    raw = buffer.sample(64)
    np.random.seed(3)
    normalised = buffer.sample(64, env=env)
    scale = np.sqrt(env.obs_rms.var + env.epsilon)
    for name in ("observations", "next_observations"):
        expected = np.clip((getattr(raw, name).numpy() - env.obs_rms.mean) / scale, -100.0, 100.0)
        np.testing.assert_allclose(getattr(normalised, name).numpy(), expected, rtol=1e-6)
    expected_rewards = np.clip(raw.rewards.numpy() / np.sqrt(9.0 + env.epsilon), -4.0, 4.0)
    np.testing.assert_allclose(normalised.rewards.numpy(), expected_rewards, rtol=1e-6)
    assert normalised.rewards.dtype == th.float32
    assert (normalised.rewards.numpy() == 4.0).any()  # the clipping path is exercised
    for field in ("actions", "terminated", "truncated", "continues", "valid"):
        assert th.equal(getattr(normalised, field), getattr(raw, field))
    env.close()


def test_vec_normalize_dict_observations():
    """Every normalised key of observations and next observations, the true final observation included; Discrete keys
    are left as they are."""

    class DictEnv(gym.Env):
        observation_space = spaces.Dict({"x": spaces.Box(-1e9, 1e9, (1,), np.float32), "k": spaces.Discrete(3)})
        action_space = spaces.Discrete(2)

        def reset(self, seed=None, options=None):
            return {"x": np.zeros(1, np.float32), "k": 0}, {}

        def step(self, action):
            return {"x": np.zeros(1, np.float32), "k": 0}, 0.0, False, False, {}

    env = VecNormalize(DummyVecEnv([DictEnv]), norm_obs_keys=["x"], clip_obs=10.0)
    env.obs_rms["x"].mean[:] = 1.0
    env.obs_rms["x"].var[:] = 4.0
    buffer = DictSequenceReplayBuffer(10, DictEnv.observation_space, spaces.Discrete(2), device="cpu", sequence_length=3)
    for i in range(4):  # the episode ends at step 1, whose final observation (x = 51) is not the next slot's
        next_x = 51 if i == 1 else i + 1
        observation, next_observation = {"x": np.array([[i]]), "k": np.array([i % 3])}, {
            "x": np.array([[next_x]]),
            "k": np.array([(i + 1) % 3]),
        }
        buffer.add(observation, next_observation, np.array([0]), np.array([1.0]), np.array([i == 1]), [{}])
    samples = buffer._get_samples(np.array([0]), env=env, env_indices=np.array([0]))
    scale = np.sqrt(4.0 + env.epsilon)
    np.testing.assert_allclose(samples.observations["x"][0, :, 0].numpy(), (np.arange(3) - 1.0) / scale, rtol=1e-6)
    np.testing.assert_allclose(
        samples.next_observations["x"][0, :, 0].numpy(), [(1 - 1.0) / scale, 10.0, (3 - 1.0) / scale], rtol=1e-6
    )
    assert samples.next_observations["x"].dtype == th.float32
    assert samples.next_observations["k"][0, :, 0].tolist() == [1, 2, 0] and samples.next_observations["k"].dtype == th.int64
    env.close()


def test_reset_forgets_every_stored_step():
    buffer = create_buffer(buffer_size=6, sequence_length=4)
    fill_buffer(buffer, 9, done_at=8)
    buffer.reset()
    assert buffer.n_steps_stored() == 0
    buffer.add(np.array([[100.0, 0.0]]), np.array([[101.0, 0.0]]), np.array([0]), np.array([1.0]), np.array([0.0]), [{}])
    samples = buffer.sample(8)
    assert samples.observations[..., 0].eq(100.0).all() and samples.next_observations[..., 0].eq(101.0).all()
    assert samples.valid[:, 0].eq(1).all() and samples.valid[:, 1:].eq(0).all() and samples.continues.eq(0).all()


@pytest.mark.parametrize(
    "observation_space, action_space, obs_dtype, action_shape, action_dtype",
    [
        (spaces.Discrete(7), spaces.Box(-1, 1, (2,), np.float64), th.int64, (2,), th.float32),
        (spaces.Box(0, 1, (1,), np.float32), spaces.MultiDiscrete([3, 4]), th.float32, (2,), th.int64),
        (spaces.Box(0, 1, (1,), np.float32), spaces.Discrete(3), th.float32, (), th.int64),
    ],
)
def test_sampled_shapes_and_dtypes(observation_space, action_space, obs_dtype, action_shape, action_dtype):
    """As SB3's buffers return them: Discrete observations as ``[..., 1]`` integers, float32 Box actions, integer
    MultiDiscrete actions (Discrete actions as ``long [B, T]`` for indexing)."""
    buffer = SequenceReplayBuffer(8, observation_space, action_space, device="cpu", n_envs=2, sequence_length=3)
    for _ in range(3):
        observation = np.array([observation_space.sample() for _ in range(2)]).reshape(2, -1)
        actions = np.array([action_space.sample() for _ in range(2)]).reshape(2, *action_shape)
        buffer.add(observation, observation, actions, np.ones(2), np.zeros(2), [{}, {}])
    samples = buffer.sample(4)
    assert samples.observations.shape == (4, 3, 1) and samples.observations.dtype == obs_dtype
    assert samples.actions.shape == (4, 3, *action_shape) and samples.actions.dtype == action_dtype


def test_pickle_round_trip(tmp_path):
    buffer = create_buffer(buffer_size=10, sequence_length=4, n_envs=2)
    fill_buffer(buffer, 17, done_at=(3, 11), truncated_at=7, n_envs=2)
    save_to_pkl(tmp_path / "buffer.pkl", buffer)
    loaded = load_from_pkl(tmp_path / "buffer.pkl")
    assert isinstance(loaded, SequenceReplayBuffer)
    assert loaded.pos == buffer.pos and loaded.full == buffer.full and loaded.size() == buffer.size()

    def assert_same_samples(seed):
        np.random.seed(seed)
        first = buffer.sample(32)
        np.random.seed(seed)
        second = loaded.sample(32)
        for field in SequenceReplayBufferSamples._fields:
            assert th.equal(getattr(first, field), getattr(second, field)), field

    assert_same_samples(0)
    # both keep working identically (terminal store and free list included) after more steps
    for target in (buffer, loaded):
        fill_buffer(target, 9, done_at=(2, 4, 6), truncated_at=5, n_envs=2)
    assert_same_samples(1)


@pytest.mark.parametrize("length", [7, 17])
def test_sequence_length_one_matches_replay_buffer(length):
    n_envs = 2
    done = np.zeros((17, n_envs), dtype=bool)
    done[[2, 5, 11], 0] = True
    done[[3, 12], 1] = True
    truncated = np.zeros_like(done)
    truncated[[8], 0] = truncated[[6, 15], 1] = True
    done, truncated = done[:length], truncated[:length]
    buffer = create_buffer(buffer_size=10, sequence_length=1, n_envs=n_envs)
    reference = ReplayBuffer(10 * n_envs, OBS_SPACE, spaces.Discrete(N_ACTIONS), device="cpu", n_envs=n_envs)
    for target in (buffer, reference):
        fill_buffer(target, length, done_at=done, truncated_at=truncated, n_envs=n_envs)

    steps = stored_steps(length, 10)
    batch_inds = np.array([step % 10 for step in steps for _ in range(n_envs)])
    # ReplayBuffer draws the env columns itself: give ours the same ones
    np.random.seed(0)
    env_indices = np.random.randint(0, n_envs, size=len(batch_inds))
    np.random.seed(0)
    theirs = reference._get_samples(batch_inds)
    ours = buffer._get_samples(batch_inds, env_indices=env_indices)
    np.testing.assert_array_equal(ours.observations[:, 0].numpy(), theirs.observations.numpy())
    np.testing.assert_array_equal(ours.next_observations[:, 0].numpy(), theirs.next_observations.numpy())
    np.testing.assert_array_equal(ours.actions.numpy(), theirs.actions.numpy())
    np.testing.assert_array_equal(ours.rewards.numpy(), theirs.rewards.numpy())
    np.testing.assert_array_equal(ours.terminated.numpy(), theirs.dones.numpy())
    np.testing.assert_array_equal(ours.valid.numpy(), 1.0)
    np.testing.assert_array_equal(ours.continues.numpy(), 0.0)

    if length < 10:
        # before the buffer is full, `sample()` draws exactly the same transitions as ReplayBuffer.sample()
        np.random.seed(5)
        ours = buffer.sample(64)
        np.random.seed(5)
        theirs = reference.sample(64)
        np.testing.assert_array_equal(ours.observations[:, 0].numpy(), theirs.observations.numpy())
        np.testing.assert_array_equal(ours.next_observations[:, 0].numpy(), theirs.next_observations.numpy())
        np.testing.assert_array_equal(ours.rewards.numpy(), theirs.rewards.numpy())
        np.testing.assert_array_equal(ours.terminated.numpy(), theirs.dones.numpy())


def total_nbytes(buffer):
    total = 0
    for value in vars(buffer).values():
        for array in value.values() if isinstance(value, dict) else [value]:
            if isinstance(array, np.ndarray):
                total += array.nbytes
    return total


def test_memory_image_observations():
    obs_space = spaces.Box(low=0, high=255, shape=(84, 84, 4), dtype=np.uint8)
    capacity, episode_length = 1000, 50
    buffer = SequenceReplayBuffer(capacity, obs_space, spaces.Discrete(N_ACTIONS), device="cpu", sequence_length=8)
    reference = ReplayBuffer(capacity, obs_space, spaces.Discrete(N_ACTIONS), device="cpu")
    frame = np.zeros((1, 84, 84, 4), dtype=np.uint8)
    for i in range(capacity + 20):
        done = (i + 1) % episode_length == 0
        frame[:] = i % 256
        buffer.add(frame, frame, np.array([0]), np.array([1.0]), np.array([float(done)]), [{}])
    sb3_nbytes = sum(
        getattr(reference, name).nbytes
        for name in ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")
    )
    ratio = total_nbytes(buffer) / sb3_nbytes
    assert total_nbytes(buffer) == buffer.nbytes()
    assert ratio <= 0.6, ratio


def test_sampling_is_vectorised():
    buffer = create_buffer(buffer_size=20_000, sequence_length=16)
    steps = np.arange(20_000)
    fill_buffer(buffer, 20_000, done_at=steps % 37 == 0, truncated_at=steps % 101 == 5)
    buffer.sample(4096)  # warm up
    start = time.perf_counter()
    for _ in range(3):
        samples = buffer.sample(4096)
    elapsed = (time.perf_counter() - start) / 3
    assert samples.observations.shape == (4096, 16, 2)
    assert elapsed < 0.5, f"sampling 4096 windows took {elapsed:.3f}s"


def test_behaviour_probs_default_nan():
    buffer = create_buffer(buffer_size=10, sequence_length=2)
    fill_buffer(buffer, 4, with_probs=False)
    samples = buffer._get_samples(np.array([0, 1]), env_indices=np.array([0, 0]))
    assert th.isnan(samples.behaviour_probs).all()
    # probabilities given later overwrite the NaN of a recycled slot, and a missing one writes NaN again
    fill_buffer(buffer, 12)
    assert not np.isnan(buffer.behaviour_probs).any()
    fill_buffer(buffer, 2, with_probs=False)
    assert np.isnan(buffer.behaviour_probs).sum() == 2


def test_invalid_arguments():
    for sequence_length in (0, 2.5, True):
        with pytest.raises(ValueError, match="sequence_length"):
            create_buffer(sequence_length=sequence_length)
    with pytest.raises(ValueError, match="optimize_memory_usage"):
        create_buffer(optimize_memory_usage=True)
    with pytest.raises(ValueError, match="buffer_size"):
        create_buffer(buffer_size=1)
    with pytest.raises(ValueError, match="DictSequenceReplayBuffer"):
        SequenceReplayBuffer(10, DICT_OBS_SPACE, spaces.Discrete(2), device="cpu")
    buffer = create_buffer()
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)
    fill_buffer(buffer, 1)
    assert buffer.sample(4).valid.shape == (4, 3)
    buffer.reset()
    with pytest.raises(ValueError, match="empty"):
        buffer.sample(4)


def test_collection_by_off_policy_algorithm(tmp_path):
    # SB3's own collection loop (`_store_transition`) fills the buffer; no gradient step is taken
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = DQN(
        "MlpPolicy",
        env,
        buffer_size=200,
        learning_starts=10_000,
        replay_buffer_class=SequenceReplayBuffer,
        replay_buffer_kwargs=dict(sequence_length=6),
        seed=0,
        device="cpu",
    )
    model.learn(total_timesteps=300)
    buffer = model.replay_buffer
    assert isinstance(buffer, SequenceReplayBuffer) and buffer.full
    np.random.seed(0)
    samples = buffer.sample(256)
    valid = samples.valid.numpy().astype(bool)
    ended = (samples.terminated + samples.truncated).numpy().astype(bool)
    assert (ended & valid).any()
    obs, next_obs = samples.observations.numpy(), samples.next_observations.numpy()
    # inside an episode the next observation is the following step's observation
    follows = samples.continues.numpy().astype(bool)[:, :-1]
    np.testing.assert_array_equal(next_obs[:, :-1][follows], obs[:, 1:][follows])
    # at an episode end it is the final observation: CartPole ends outside its bounds, unlike a reset observation
    final = next_obs[ended & valid]
    assert (
        (np.abs(final[:, 0]) > 2.4) | (np.abs(final[:, 2]) > 0.2095) | samples.truncated.numpy()[ended & valid].astype(bool)
    ).all()

    model.save_replay_buffer(tmp_path / "replay_buffer.pkl")
    model.replay_buffer = None
    model.load_replay_buffer(tmp_path / "replay_buffer.pkl", truncate_last_traj=False)
    np.random.seed(0)
    reloaded = model.replay_buffer.sample(256)
    for field in ("observations", "next_observations", "rewards", "continues", "valid"):
        assert th.equal(getattr(samples, field), getattr(reloaded, field)), field
