"""
Sequence replay buffers for multi-step, off-policy soft Q-learning (Soft Q(λ)).

The buffers keep SB3's ``ReplayBuffer`` storage layout (``[buffer_size, n_envs, ...]`` arrays, a write
position ``pos`` and a ``full`` flag) but store every observation only once and return windows of
``sequence_length`` consecutive steps of one environment instead of independent transitions.
"""

import warnings
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import BaseBuffer, ReplayBuffer
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.vec_env import VecNormalize

from sb3_softq.common.checks import check_number

try:
    # Check memory used by replay buffer when possible
    import psutil
except ImportError:
    psutil = None

# Key under which the single array of a non-Dict observation space is handled by the shared code paths
_SINGLE_KEY = ""


class SequenceReplayBufferSamples(NamedTuple):
    """
    A batch of ``B`` windows of ``T`` (``sequence_length``) consecutive steps, each from one env column.
    Every field is a tensor of shape ``[B, T, ...]`` on the buffer's device.

    - ``observations``: :math:`s_k`, ``[B, T, *obs_shape]`` (a dict of such tensors for Dict spaces)
    - ``actions``: :math:`a_k`, ``[B, T]`` (``long``) for Discrete action spaces, ``[B, T, action_dim]`` otherwise
    - ``next_observations``: :math:`s_{k+1}`: the following step's observation, or the true final
      observation (``infos[i]["terminal_observation"]``) where the episode ended at step ``k``
    - ``rewards``: :math:`r_k` (normalised by the ``VecNormalize`` env when one is given), ``float32``
    - ``terminated``: 1 where the episode ended at step ``k`` (no bootstrap); with ``handle_timeout_termination``
      (the default) an end through a time limit is not a termination
    - ``truncated``: 1 where the episode was cut at step ``k`` by a time limit (bootstrap from ``next_observations``)
    - ``continues``: 1 where step ``k + 1`` belongs to the same episode and is a valid position inside the window;
      always 0 at an episode end, at the last index ``T - 1`` and before an invalid position
    - ``valid``: 1 for positions that hold a stored step that may be trained on, 0 for positions past the newest step
    - ``behaviour_probs``: :math:`\\mu(a_k|s_k)` stored at collection time (NaN where none was given)

    Invalid positions (``valid == 0``) repeat the newest stored step and must be masked out of any loss; their
    ``behaviour_probs`` may be NaN.
    """

    observations: th.Tensor | TensorDict
    actions: th.Tensor
    next_observations: th.Tensor | TensorDict
    rewards: th.Tensor
    terminated: th.Tensor
    truncated: th.Tensor
    continues: th.Tensor
    valid: th.Tensor
    behaviour_probs: th.Tensor


class SequenceReplayBuffer(ReplayBuffer):
    """
    Sequence replay buffer for Soft Q(λ) and other multi-step off-policy returns: samples windows of
    ``sequence_length`` consecutive steps of one environment.

    **Layout.** Each step is stored once, in SB3's ``[buffer_size, n_envs, ...]`` arrays: ``observations``
    (:math:`s_k`), ``actions``, ``rewards``, ``dones`` (the episode ended at this step), ``timeouts`` (it ended
    through a time limit, from ``infos[i]["TimeLimit.truncated"]``) and ``behaviour_probs`` (:math:`\\mu(a_k|s_k)`).
    There is no second array of next observations: like SB3's ``optimize_memory_usage``, ``add()`` writes the next
    observation ahead into the following slot, where the next ``add()`` finds the same observation again. Where an
    episode ended, the following slot holds the reset observation of the next episode instead, so the true final
    observation is kept in a compact side store: ``terminal_observations[j]`` with ``terminal_index[slot, env] = j``
    (``-1`` when the step did not end an episode). Its entries are recycled through a free list when their slot is
    overwritten, so it holds at most one observation per episode end in the buffer. It grows as needed: with very
    short episodes it can reach the size of ``observations`` itself, which the memory check at construction (made for
    its initial size) does not foresee.

    **Validity.** Steps are read in logical order, from the oldest to the newest. Before the buffer is full, the
    steps are the slots ``0 .. pos - 1``. Once it is full, every slot except the write head ``pos`` is a step: the
    head's observation was overwritten by the newest next observation and its action and reward are stale, exactly
    the slot that SB3's memory-optimised sampling excludes; hence a full buffer samples ``buffer_size - 1`` steps
    per env. Windows start uniformly over the stored steps (and over the env columns) and run forward in logical
    order, wrapping around the end of the arrays but never across the write head: positions past the newest step
    are invalid (``valid == 0``). Positions after an episode end are valid (they start the next episode of the same
    env), but ``continues == 0`` at the end step cuts the trace there.

    :param buffer_size: Max number of steps in the buffer (over all envs, as in SB3)
    :param observation_space: Observation space
    :param action_space: Action space
    :param device: PyTorch device of the sampled tensors
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Must be ``False``: this buffer already stores every observation once
    :param handle_timeout_termination: Handle timeout termination (due to timelimit) separately and treat the
        task as infinite horizon task (``truncated`` instead of ``terminated``).
        https://github.com/DLR-RM/stable-baselines3/issues/284
    :param sequence_length: Number of consecutive steps ``T`` in each sampled window (>= 1)
    """

    behaviour_probs: np.ndarray
    terminal_index: np.ndarray
    terminal_observations: np.ndarray
    #: Behaviour probabilities handed over for the next :meth:`add` (see :meth:`set_next_behaviour_probs`)
    _next_behaviour_probs: np.ndarray | None = None

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int = 8,
    ):
        check_number("sequence_length", sequence_length, 1, integer=True)
        if optimize_memory_usage:
            raise ValueError(
                "`optimize_memory_usage=True` is not supported (nor needed) by SequenceReplayBuffer: it already stores "
                "every observation once (the next observation is read from the following slot). "
                "Use `optimize_memory_usage=False`."
            )
        # BaseBuffer.__init__ is called directly, skipping ReplayBuffer.__init__: the latter would allocate a second
        # full array of next observations (which this buffer avoids) and cannot allocate Dict observations.
        # Every attribute that SB3 users of a ReplayBuffer rely on is set below instead.
        BaseBuffer.__init__(self, buffer_size, observation_space, action_space, device, n_envs=n_envs)
        self.buffer_size = max(buffer_size // n_envs, 1)
        if self.buffer_size < 2:
            raise ValueError(
                f"`buffer_size` must hold at least 2 steps per env (buffer_size >= 2 * n_envs), got buffer_size={buffer_size}"
                f" with n_envs={n_envs}"
            )
        self.sequence_length = int(sequence_length)
        self.optimize_memory_usage = False
        self.handle_timeout_termination = handle_timeout_termination

        # Check that the replay buffer can fit into the memory
        mem_available = psutil.virtual_memory().available if psutil is not None else None

        self._allocate_observations()
        self.actions = np.zeros(
            (self.buffer_size, self.n_envs, self.action_dim), dtype=self._maybe_cast_dtype(action_space.dtype)
        )
        self.rewards = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.dones = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.timeouts = np.zeros((self.buffer_size, self.n_envs), dtype=np.float32)
        self.behaviour_probs = np.full((self.buffer_size, self.n_envs), np.nan, dtype=np.float32)
        self.terminal_index = np.full((self.buffer_size, self.n_envs), -1, dtype=np.int64)
        self._free_terminal_slots: list[int] = list(range(self._terminal_capacity()))

        if mem_available is not None:
            total_memory_usage: float = self.nbytes()
            if total_memory_usage > mem_available:
                warnings.warn(
                    "This system does not have apparently enough memory to store the complete "
                    f"replay buffer {total_memory_usage / 1e9:.2f}GB > {mem_available / 1e9:.2f}GB"
                )

    # ------------------------------------------------------------------------------------------------------------
    # Observation storage: non-Dict spaces are handled as a one-key dict so that the Dict variant shares the logic
    # ------------------------------------------------------------------------------------------------------------

    def _allocate_observations(self) -> None:
        """Allocate ``observations`` ``[buffer_size, n_envs, *obs_shape]`` and an initial terminal store."""
        if isinstance(self.obs_shape, dict):
            raise ValueError("SequenceReplayBuffer does not support Dict `observation_space`: use DictSequenceReplayBuffer")
        dtype = self.observation_space.dtype
        self.observations = np.zeros((self.buffer_size, self.n_envs, *self.obs_shape), dtype=dtype)
        self.terminal_observations = np.zeros((self.n_envs, *self.obs_shape), dtype=dtype)

    def _observation_parts(self) -> dict[str, np.ndarray]:
        """:return: the observation arrays ``[buffer_size, n_envs, ...]`` by key."""
        return {_SINGLE_KEY: self.observations}

    def _terminal_parts(self) -> dict[str, np.ndarray]:
        """:return: the terminal observation store arrays ``[capacity, ...]`` by key."""
        return {_SINGLE_KEY: self.terminal_observations}

    def _set_terminal_parts(self, parts: dict[str, np.ndarray]) -> None:
        self.terminal_observations = parts[_SINGLE_KEY]

    def _split_obs(self, obs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """:return: one env batch of observations ``[n_envs, ...]`` by key (reshaped for Discrete spaces)."""
        assert not isinstance(obs, dict)
        return {_SINGLE_KEY: np.asarray(obs).reshape((self.n_envs, *self.obs_shape))}

    def _merge_obs(self, parts: dict[str, Any]) -> Any:
        """:return: the observation (array or tensor) of a non-Dict space, or the dict of a Dict space."""
        return parts[_SINGLE_KEY]

    def _obs_to_torch(self, obs: np.ndarray | dict[str, np.ndarray]) -> th.Tensor | TensorDict:
        assert isinstance(obs, np.ndarray)
        return self.to_torch(obs, copy=False)

    def _terminal_capacity(self) -> int:
        """:return: the number of entries of the terminal observation store (used and free)."""
        return len(next(iter(self._terminal_parts().values())))

    def nbytes(self) -> int:
        """
        :return: the number of bytes held by the buffer's arrays (observations, the terminal observation store,
            actions, rewards, dones, timeouts, behaviour probabilities and the terminal index)
        """
        arrays = [*self._observation_parts().values(), *self._terminal_parts().values()]
        arrays += [self.actions, self.rewards, self.dones, self.timeouts, self.behaviour_probs, self.terminal_index]
        return int(sum(array.nbytes for array in arrays))

    # ------------------------------------------------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------------------------------------------------

    def _allocate_terminal_slots(self, count: int) -> np.ndarray:
        """Take ``count`` free entries of the terminal store, growing it (doubling) when needed."""
        missing = count - len(self._free_terminal_slots)
        if missing > 0:
            capacity = self._terminal_capacity()
            # Doubling, but never beyond one final observation per slot (the most that can be in use)
            new_capacity = max(min(2 * capacity, self.buffer_size * self.n_envs), capacity + missing)
            grown = {}
            for key, store in self._terminal_parts().items():
                grown[key] = np.zeros((new_capacity, *store.shape[1:]), dtype=store.dtype)
                grown[key][:capacity] = store
            self._set_terminal_parts(grown)
            self._free_terminal_slots.extend(range(capacity, new_capacity))
        taken = self._free_terminal_slots[-count:] if count > 0 else []
        del self._free_terminal_slots[len(self._free_terminal_slots) - count :]
        return np.asarray(taken, dtype=np.int64)

    def _release_terminal_slots(self, slot: int) -> None:
        """Free the terminal store entries referenced by the steps at ``slot`` (about to be overwritten)."""
        used = self.terminal_index[slot]
        self._free_terminal_slots.extend(int(index) for index in used[used >= 0])
        self.terminal_index[slot] = -1

    def set_next_behaviour_probs(self, behaviour_probs: np.ndarray | None) -> None:
        """
        Hand over :math:`\\mu(a_k|s_k)` ``[n_envs]`` of the step that the next :meth:`add` stores, for a caller of
        ``add`` that passes SB3's arguments only (SB3's ``OffPolicyAlgorithm._store_transition``). They serve that one
        ``add``, unless it is given ``behaviour_probs`` itself.

        :param behaviour_probs: the probabilities, or ``None``
        """
        self._next_behaviour_probs = behaviour_probs

    def add(  # type: ignore[override]
        self,
        obs: np.ndarray | dict[str, np.ndarray],
        next_obs: np.ndarray | dict[str, np.ndarray],
        action: np.ndarray,
        reward: np.ndarray,
        done: np.ndarray,
        infos: list[dict[str, Any]],
        behaviour_probs: np.ndarray | None = None,
    ) -> None:
        """
        Store one step of every env at the write position ``pos``.

        :param obs: Observations :math:`s_k` ``[n_envs, *obs_shape]``
        :param next_obs: Next observations :math:`s_{k+1}` ``[n_envs, *obs_shape]``, holding the true final
            observation (``infos[i]["terminal_observation"]``) for envs whose episode ended, as SB3's
            ``OffPolicyAlgorithm._store_transition`` passes them
        :param action: Actions ``[n_envs, ...]``
        :param reward: Rewards ``[n_envs]``
        :param done: Whether the episode ended at this step (terminated or truncated) ``[n_envs]``
        :param infos: One info dict per env (``"TimeLimit.truncated"`` marks time-limit truncation)
        :param behaviour_probs: Probability :math:`\\mu(a_k|s_k)` of each taken action under the behaviour policy
            ``[n_envs]``, each in (0, 1] (else a ``ValueError``, before anything is written), or ``None``: those handed
            over by :meth:`set_next_behaviour_probs`, if any, else NaN
        """
        handed_over, self._next_behaviour_probs = self._next_behaviour_probs, None
        if behaviour_probs is None:
            behaviour_probs = handed_over
        if behaviour_probs is not None:  # checked before anything is written
            probs = np.asarray(behaviour_probs, dtype=np.float32).reshape(self.n_envs)
            if not np.all((probs > 0.0) & (probs <= 1.0)):  # NaN and inf fail too
                raise ValueError(
                    f"`behaviour_probs` must be probabilities in (0, 1] (mu(a|s) of the taken actions), got {probs.tolist()}"
                )
        obs_parts = self._split_obs(obs)
        next_obs_parts = self._split_obs(next_obs)
        if self.handle_timeout_termination:
            timeouts = np.array([info.get("TimeLimit.truncated", False) for info in infos], dtype=np.float32)
        else:
            timeouts = np.zeros(self.n_envs, dtype=np.float32)
        dones = np.asarray(done, dtype=np.float32).reshape(self.n_envs)
        # A time-limit truncation ends the episode even if `done` was not set with it
        ended = np.logical_or(dones > 0, timeouts > 0)

        # The slot `pos` is overwritten: its final observations (if any) are no longer needed
        self._release_terminal_slots(self.pos)
        next_slot = (self.pos + 1) % self.buffer_size
        ended_envs = np.flatnonzero(ended)
        running_envs = np.flatnonzero(~ended)
        store_ids = self._allocate_terminal_slots(len(ended_envs))
        observations, terminal_store = self._observation_parts(), self._terminal_parts()
        for key, storage in observations.items():
            # Copy to avoid modification by reference
            storage[self.pos] = np.array(obs_parts[key])
            # Write ahead: the next step of a running episode starts from `next_obs`
            storage[next_slot, running_envs] = next_obs_parts[key][running_envs]
            terminal_store[key][store_ids] = next_obs_parts[key][ended_envs]
        self.terminal_index[self.pos, ended_envs] = store_ids

        # Reshape to handle multi-dim and discrete action spaces, see GH #970 #1392
        self.actions[self.pos] = np.array(action).reshape((self.n_envs, self.action_dim))
        self.rewards[self.pos] = np.array(reward).reshape(self.n_envs)
        self.dones[self.pos] = dones
        self.timeouts[self.pos] = timeouts
        if behaviour_probs is None:
            self.behaviour_probs[self.pos] = np.nan
        else:
            self.behaviour_probs[self.pos] = np.asarray(behaviour_probs, dtype=np.float32).reshape(self.n_envs)

        self.pos += 1
        if self.pos == self.buffer_size:
            self.full = True
            self.pos = 0

    def truncate_last_trajectory(self) -> None:
        """
        End the episode of the newest step of every env whose episode was still running, as SB3's
        ``HerReplayBuffer.truncate_last_trajectory`` does: mark it done, and truncated (its return bootstraps). Unlike
        SB3's buffer, it is a truncation also without ``handle_timeout_termination``: that option decides whether
        the env's time limits end the task, while this cut is made by the data collection, not by the env.

        Call it before the next ``add()`` starts a new episode, e.g. after the env was reset by a new ``learn()``
        or when the buffer was loaded into another run: the next ``add()`` writes its observation into the slot that
        holds the newest step's next observation, and the two episodes would otherwise be joined. That next
        observation is moved to the terminal observation store first, so the newest step keeps its true
        :math:`s_{k+1}`.
        """
        if self.n_steps_stored() == 0:
            return
        newest = (self.pos - 1) % self.buffer_size
        running_envs = np.flatnonzero(np.logical_and(self.dones[newest] == 0, self.timeouts[newest] == 0))
        if running_envs.size == 0:
            return
        store_ids = self._allocate_terminal_slots(len(running_envs))
        terminal_store = self._terminal_parts()
        for key, storage in self._observation_parts().items():
            terminal_store[key][store_ids] = storage[self.pos, running_envs]
        self.terminal_index[newest, running_envs] = store_ids
        self.dones[newest, running_envs] = 1.0
        self.timeouts[newest, running_envs] = 1.0  # not a time limit, but the return bootstraps there as after one

    def reset(self) -> None:
        """Empty the buffer (the terminal observation store keeps its capacity, all entries free)."""
        super().reset()
        self.terminal_index.fill(-1)
        self._free_terminal_slots = list(range(self._terminal_capacity()))

    # ------------------------------------------------------------------------------------------------------------
    # Sampling
    # ------------------------------------------------------------------------------------------------------------

    def n_steps_stored(self) -> int:
        """
        :return: the number of sampleable steps per env: ``pos`` before the buffer is full,
            ``buffer_size - 1`` once it is full (the write head is excluded)
        """
        return self.buffer_size - 1 if self.full else self.pos

    def oldest_index(self) -> int:
        """:return: the slot of the oldest sampleable step (``0`` before the buffer is full, ``pos + 1`` after)."""
        return (self.pos + 1) % self.buffer_size if self.full else 0

    def sample(self, batch_size: int, env: VecNormalize | None = None) -> SequenceReplayBufferSamples:  # type: ignore[override]
        """
        Sample ``batch_size`` windows of ``sequence_length`` consecutive steps.

        Each window comes from one env column drawn uniformly, and starts at a step drawn uniformly over the
        stored steps of that column (see the class docstring for the validity rules).

        :param batch_size: Number of windows to sample
        :param env: associated gym VecEnv to normalize the observations/rewards when sampling
        :return: ``[batch_size, sequence_length, ...]`` tensors
        """
        n_stored = self.n_steps_stored()
        if n_stored == 0:
            raise ValueError("Cannot sample from an empty SequenceReplayBuffer: `add()` at least one step first")
        logical_starts = np.random.randint(0, n_stored, size=batch_size)
        env_indices = np.random.randint(0, high=self.n_envs, size=(batch_size,))
        return self._get_windows(logical_starts, env_indices, env)

    def _window_indices(self, batch_inds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        :param batch_inds: Slots of the first step of each window ``[B]``
        :return: the slots to read ``[B, T]`` (positions past the newest step are clamped to it)
            and the validity mask ``[B, T]``
        """
        logical_starts = (np.asarray(batch_inds, dtype=np.int64) - self.oldest_index()) % self.buffer_size
        return self._logical_window_indices(logical_starts)

    def _logical_window_indices(self, logical_starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """
        :param logical_starts: Position of the first step of each window among the stored steps, oldest first ``[B]``
        :return: the slots to read ``[B, T]`` (positions past the newest step are clamped to it)
            and the validity mask ``[B, T]``
        """
        n_stored = self.n_steps_stored()
        logical = logical_starts[:, None] + np.arange(self.sequence_length)
        valid = logical < n_stored
        np.minimum(logical, max(n_stored - 1, 0), out=logical)
        logical += self.oldest_index()
        logical %= self.buffer_size
        return logical, valid

    def _read(self, array: np.ndarray, flat_inds: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """
        :param array: a buffer array ``[buffer_size, n_envs, ...]``
        :param flat_inds: indices ``slot * n_envs + env`` of any shape
        :param out: where to write the result (``[*flat_inds.shape, ...]``, the dtype of ``array``), or ``None``
        :return: ``array[slot, env]`` at every index, a copy of shape ``[*flat_inds.shape, ...]``
        """
        # `take` on the flattened view is several times faster than broadcast indexing with two index arrays
        return array.reshape(-1, *array.shape[2:]).take(flat_inds, axis=0, out=out)

    def _gather_observations(self, flat_inds: np.ndarray, following: np.ndarray, ended: np.ndarray) -> dict[str, np.ndarray]:
        """
        Observations and next observations, read with one ``take`` per key into one fresh array ``[2, B, T, ...]``
        (``[0]``: :math:`s_k`, ``[1]``: :math:`s_{k+1}`): the next observation is the following slot's, or the
        terminal store's where the episode ended.

        :param flat_inds: flat indices (see :meth:`_read`) of the steps ``[B, T]``
        :param following: flat indices of the slots that follow them ``[B, T]``
        :param ended: whether the episode ended at each step ``[B, T]``
        :return: the ``[2, B, T, ...]`` arrays by key
        """
        store_ids = self._read(self.terminal_index, flat_inds).ravel()
        from_store = np.flatnonzero(ended.ravel() & (store_ids >= 0))
        terminal_store = self._terminal_parts()
        both = np.stack((flat_inds, following))
        pairs = {}
        for key, storage in self._observation_parts().items():
            pairs[key] = self._read(storage, both)
            if from_store.size > 0:
                flat_next_obs = pairs[key][1].reshape(-1, *storage.shape[2:])  # a view of the fresh copy
                flat_next_obs[from_store] = terminal_store[key][store_ids[from_store]]
        return pairs

    def _get_samples(  # type: ignore[override]
        self,
        batch_inds: np.ndarray,
        env: VecNormalize | None = None,
        env_indices: np.ndarray | None = None,
    ) -> SequenceReplayBufferSamples:
        """
        Gather the windows starting at the given slots.

        :param batch_inds: Slot of the first step of each window ``[B]`` (a stored step; slots that are not
            stored give fully invalid windows)
        :param env: associated gym VecEnv to normalize the observations/rewards when sampling
        :param env_indices: Env column of each window ``[B]`` (drawn uniformly when ``None``)
        :return: ``[B, sequence_length, ...]`` tensors
        """
        if env_indices is None:
            env_indices = np.random.randint(0, high=self.n_envs, size=(len(batch_inds),))
        logical_starts = (np.asarray(batch_inds, dtype=np.int64) - self.oldest_index()) % self.buffer_size
        return self._get_windows(logical_starts, env_indices, env)

    def _get_windows(
        self, logical_starts: np.ndarray, env_indices: np.ndarray, env: VecNormalize | None = None
    ) -> SequenceReplayBufferSamples:
        """
        Gather the windows starting at the given stored steps (see :meth:`_logical_window_indices`).

        The per-step scalars are written by ``take`` straight into one ``float32`` array and sent to the device in
        one conversion (then split into views); observations and next observations are one array per key.
        """
        slots, valid = self._logical_window_indices(logical_starts)
        envs = np.asarray(env_indices, dtype=np.int64)[:, None]
        flat_inds = slots * self.n_envs + envs
        slots += 1
        slots %= self.buffer_size
        following = slots * self.n_envs + envs

        # rows: rewards, terminated, truncated, continues, valid, behaviour_probs
        scalars = np.empty((6, *flat_inds.shape), dtype=np.float32)
        dones, timeouts = self._read(self.dones, flat_inds), self._read(self.timeouts, flat_inds, out=scalars[2])
        ended = (dones + timeouts) > 0
        np.logical_and(dones > 0, timeouts == 0, out=scalars[1])  # terminated: ended, not through a time limit
        self._read(self.rewards, flat_inds, out=scalars[0])
        if env is not None:
            scalars[0] = self._normalize_reward(scalars[0], env)
        np.logical_and(~ended[:, :-1], valid[:, 1:], out=scalars[3, :, :-1])
        scalars[3, :, -1] = 0.0
        scalars[4] = valid
        self._read(self.behaviour_probs, flat_inds, out=scalars[5])

        pairs = self._gather_observations(flat_inds, following, ended)
        if env is None:  # one conversion (one host-to-device copy) per key for both, split into views
            split = {key: self.to_torch(pair, copy=False).unbind(0) for key, pair in pairs.items()}
            observations = self._merge_obs({key: obs for key, (obs, _) in split.items()})
            next_observations = self._merge_obs({key: next_obs for key, (_, next_obs) in split.items()})
        else:  # VecNormalize normalises each half into a new array
            observations = self._obs_to_torch(self._normalize_obs(self._merge_obs({k: p[0] for k, p in pairs.items()}), env))
            next_observations = self._obs_to_torch(
                self._normalize_obs(self._merge_obs({k: p[1] for k, p in pairs.items()}), env)
            )
        actions = self._read(self.actions, flat_inds)
        if isinstance(self.action_space, spaces.Discrete):
            actions = actions[..., 0].astype(np.int64)

        rewards, terminated, truncated, continues, valid_steps, behaviour_probs = self.to_torch(scalars, copy=False).unbind(0)
        # Every array here is a fresh copy (take, fancy indexing, stacking or normalisation): no need to copy it again
        return SequenceReplayBufferSamples(
            observations=observations,
            actions=self.to_torch(actions, copy=False),
            next_observations=next_observations,
            rewards=rewards,
            terminated=terminated,
            truncated=truncated,
            continues=continues,
            valid=valid_steps,
            behaviour_probs=behaviour_probs,
        )


class DictSequenceReplayBuffer(SequenceReplayBuffer):
    """
    Sequence replay buffer for Dict observation spaces, see :class:`SequenceReplayBuffer`.

    ``observations`` and ``terminal_observations`` are dicts of arrays (one per key, with the layout of the
    non-Dict buffer); sampled observations are dicts of ``[B, T, *obs_shape[key]]`` tensors. Like the non-Dict buffer
    it is a subclass of SB3's ``ReplayBuffer`` (what SB3's algorithms check for), not of ``DictReplayBuffer``.

    :param buffer_size: Max number of steps in the buffer (over all envs, as in SB3)
    :param observation_space: Observation space (``spaces.Dict``)
    :param action_space: Action space
    :param device: PyTorch device of the sampled tensors
    :param n_envs: Number of parallel environments
    :param optimize_memory_usage: Must be ``False``: this buffer already stores every observation once
    :param handle_timeout_termination: Handle timeout termination (due to timelimit) separately and treat the
        task as infinite horizon task (``truncated`` instead of ``terminated``).
    :param sequence_length: Number of consecutive steps ``T`` in each sampled window (>= 1)
    """

    observation_space: spaces.Dict
    obs_shape: dict[str, tuple[int, ...]]  # type: ignore[assignment]
    observations: dict[str, np.ndarray]  # type: ignore[assignment]
    terminal_observations: dict[str, np.ndarray]  # type: ignore[assignment]

    def __init__(
        self,
        buffer_size: int,
        observation_space: spaces.Dict,
        action_space: spaces.Space,
        device: th.device | str = "auto",
        n_envs: int = 1,
        optimize_memory_usage: bool = False,
        handle_timeout_termination: bool = True,
        sequence_length: int = 8,
    ):
        if not isinstance(observation_space, spaces.Dict):
            raise ValueError(f"DictSequenceReplayBuffer needs a Dict `observation_space`, got {observation_space}")
        super().__init__(
            buffer_size,
            observation_space,
            action_space,
            device=device,
            n_envs=n_envs,
            optimize_memory_usage=optimize_memory_usage,
            handle_timeout_termination=handle_timeout_termination,
            sequence_length=sequence_length,
        )

    def _allocate_observations(self) -> None:
        self.observations = {
            key: np.zeros((self.buffer_size, self.n_envs, *shape), dtype=self.observation_space[key].dtype)
            for key, shape in self.obs_shape.items()
        }
        self.terminal_observations = {
            key: np.zeros((self.n_envs, *shape), dtype=self.observation_space[key].dtype)
            for key, shape in self.obs_shape.items()
        }

    def _observation_parts(self) -> dict[str, np.ndarray]:
        return self.observations

    def _terminal_parts(self) -> dict[str, np.ndarray]:
        return self.terminal_observations

    def _set_terminal_parts(self, parts: dict[str, np.ndarray]) -> None:
        self.terminal_observations = parts

    def _split_obs(self, obs: np.ndarray | dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert isinstance(obs, dict)
        # Reshape needed when using multiple envs with discrete observations
        return {key: np.asarray(obs[key]).reshape((self.n_envs, *shape)) for key, shape in self.obs_shape.items()}

    def _merge_obs(self, parts: dict[str, Any]) -> Any:
        return parts

    def _obs_to_torch(self, obs: np.ndarray | dict[str, np.ndarray]) -> th.Tensor | TensorDict:
        assert isinstance(obs, dict)
        return {key: self.to_torch(value, copy=False) for key, value in obs.items()}
