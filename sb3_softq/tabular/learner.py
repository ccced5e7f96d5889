"""Tabular Soft Q(λ): the online one-step, n-step and eligibility-trace soft Q-learning algorithms."""

import json
import math
import os
import warnings
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, TypeGuard, TypeVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import ArrayLike, NDArray

from sb3_softq.tabular.soft import FloatArray, boltzmann_log_probs, reference_log_prior, soft_value

SelfTabularSoftQLambda = TypeVar("SelfTabularSoftQLambda", bound="TabularSoftQLambda")
Schedule = Callable[[float], float]
BehaviourCallable = Callable[[int, FloatArray], ArrayLike]

ALGORITHMS = ("one_step", "n_step", "lambda")
TRACES = ("boltzmann", "importance_sampling", "tree_backup")
TRACE_TYPES = ("accumulating", "replacing")


class _Transition(NamedTuple):
    obs: int
    action: int
    reward: float
    next_obs: int
    terminated: bool
    behaviour_prob: float


def _discrete_size(space: spaces.Space, name: str) -> int:
    if not isinstance(space, spaces.Discrete) or int(space.start) != 0:
        raise ValueError(f"TabularSoftQLambda needs a Discrete {name} space starting at 0 (FrozenLake, Taxi...), got {space}")
    return int(space.n)


def _is_real(value: Any) -> TypeGuard[int | float | np.floating | np.integer]:
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool)


def _check_options(
    ent_coef: Any, gamma: Any, learning_rate: Any, algorithm: str, trace: str, n: Any, trace_lambda: Any, trace_type: str
) -> None:
    """Raise a ``ValueError`` / ``TypeError`` naming the first invalid option and its allowed values."""
    if not _is_real(ent_coef) or not (math.isfinite(ent_coef) and ent_coef > 0):
        raise ValueError(f"ent_coef must be a finite float > 0, got {ent_coef!r}")
    if not _is_real(gamma) or not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be a float in [0, 1], got {gamma!r}")
    if learning_rate is not None and not callable(learning_rate):
        if not _is_real(learning_rate):
            raise TypeError(f"learning_rate must be a float > 0 or a callable schedule, got {learning_rate!r}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate!r}")
    _check_algorithm_options(algorithm, trace, n, trace_lambda, trace_type)


def _check_algorithm_options(algorithm: str, trace: str, n: Any, trace_lambda: Any, trace_type: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if trace not in TRACES:
        raise ValueError(f"trace must be one of {TRACES}, got {trace!r}")
    if trace == "importance_sampling" and algorithm != "n_step":
        raise ValueError(
            "trace='importance_sampling' is only available with algorithm='n_step'; "
            f"use trace='tree_backup' for off-policy {algorithm!r} learning"
        )
    if trace_type not in TRACE_TYPES:
        raise ValueError(f"trace_type must be one of {TRACE_TYPES}, got {trace_type!r}")
    if trace_type == "replacing" and algorithm != "lambda":
        raise ValueError("trace_type='replacing' is only used by algorithm='lambda'")
    if n is not None:
        if algorithm != "n_step":
            raise ValueError(f"n is only used by algorithm='n_step' (got algorithm={algorithm!r}); leave n=None")
        if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
    if trace_lambda is not None:
        if algorithm == "one_step":
            raise ValueError("trace_lambda is not used by algorithm='one_step'; leave trace_lambda=None")
        if not _is_real(trace_lambda) or not 0.0 <= trace_lambda <= 1.0:
            raise ValueError(f"trace_lambda must be a float in [0, 1], got {trace_lambda!r}")


def _check_behaviour_policy(behaviour_policy: Any) -> None:
    allowed = "None (on-policy Boltzmann), 'uniform', an epsilon in [0, 1] (epsilon-greedy) or a callable"
    if behaviour_policy is None or callable(behaviour_policy):
        return
    if isinstance(behaviour_policy, str):
        if behaviour_policy != "uniform":
            raise ValueError(f"behaviour_policy must be {allowed}, got {behaviour_policy!r}")
        return
    if not _is_real(behaviour_policy):
        raise TypeError(f"behaviour_policy must be {allowed}, got {behaviour_policy!r}")
    if not 0.0 <= behaviour_policy <= 1.0:
        raise ValueError(f"behaviour_policy as epsilon (epsilon-greedy) must be in [0, 1], got {behaviour_policy!r}")


class TabularSoftQLambda:
    """
    Tabular Soft Q(λ): online, off-policy soft Q-learning with n-step returns or eligibility traces
    ("Soft Q(λ): a multi-step off-policy method for entropy regularised reinforcement learning using eligibility
    traces", appendices 1-2).

    With soft value :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) e^{Q(s,a)/\\tau}`, Boltzmann policy
    :math:`\\pi_B = \\mathrm{softmax}(Q/\\tau + \\log\\bar\\pi)` and TD error
    :math:`\\delta_t = r_t + \\gamma (1 - \\text{terminated}_t) V(s_{t+1}) - Q(s_t, a_t)` (eq. 11):

    - ``"one_step"`` (eq. 10): :math:`Q(s_t, a_t) \\leftarrow Q(s_t, a_t) + \\alpha \\delta_t`.
    - ``"n_step"`` (eq. 23, 26-27, 36): once :math:`s_{t+n}` is seen (or the episode ends),
      :math:`Q(s_t, a_t) \\leftarrow Q(s_t, a_t) + \\alpha \\sum_{k=t}^{t+n-1} (\\prod_{i=t+1}^{k} \\gamma c_i) \\delta_k`
      with the TD errors of the current table, so that the update is the n-step return of eq. 18 / 24 (Boltzmann,
      :math:`c_i = \\lambda`), per-decision importance sampling (:math:`c_i = \\lambda \\pi_B(a_i|s_i)/\\mu(a_i|s_i)`)
      or Soft Tree Backup (eq. 30, :math:`c_i = \\lambda \\pi_B(a_i|s_i)`).
    - ``"lambda"`` (backward view, eq. 15-17, 43-48): every step,
      :math:`e \\leftarrow \\gamma \\lambda c_t e`, :math:`e(s_t, a_t) \\leftarrow e(s_t, a_t) + 1` (accumulating) or
      :math:`1` (replacing), :math:`Q \\leftarrow Q + \\alpha \\delta_t e`, with :math:`c_t = 1` (Boltzmann, meant
      for on-policy learning) or :math:`c_t = \\pi_B(a_t|s_t)` (tree backup, off-policy under any behaviour policy).

    Traces and n-step windows start empty at every episode; a truncated episode (time limit) bootstraps with
    :math:`V` of its final observation, a terminated one does not.

    :param env: a gymnasium environment with ``Discrete`` observation and action spaces
    :param ent_coef: temperature :math:`\\tau > 0`
    :param reference_policy: :math:`\\bar\\pi`: ``None`` (uniform), a probability vector over actions or a table
        ``[n_states, n_actions]``; probabilities must be positive
    :param gamma: discount factor in [0, 1]
    :param learning_rate: :math:`\\alpha`: a float, or a schedule ``progress_remaining -> alpha`` (SB3 convention:
        progress goes from 1 at the start of ``learn`` to 0 at its end; ``observe`` outside ``learn`` needs a float)
    :param algorithm: ``"one_step"``, ``"n_step"`` or ``"lambda"``
    :param trace: ``"tree_backup"``, ``"boltzmann"`` or (``"n_step"`` only) ``"importance_sampling"``; irrelevant for
        ``"one_step"``
    :param n: number of steps of ``"n_step"`` (default 3); only for ``"n_step"``
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`; default 0.9 for ``"lambda"`` and 1 for ``"n_step"`` (the paper's
        n-step returns); not for ``"one_step"``
    :param trace_type: ``"accumulating"`` or ``"replacing"`` eligibility traces (``"replacing"`` only for ``"lambda"``)
    :param behaviour_policy: how actions are chosen while learning: ``None`` (on-policy: sample :math:`\\pi_B`),
        ``"uniform"``, a float :math:`\\epsilon \\in [0, 1]` (ε-greedy with respect to :math:`Q`, ties shared) or a
        callable ``(obs, q_table) -> probabilities over actions``
    :param online: update the table at every step (the paper's online algorithms). With ``False``, the TD errors and
        trace coefficients of an episode use the table as it was at the start of that episode (the offline forward /
        backward views, which then coincide exactly).
    :param seed: seed of the action sampling and of the first ``env.reset``
    """

    def __init__(
        self,
        env: gym.Env,
        ent_coef: float = 0.1,
        reference_policy: ArrayLike | None = None,
        gamma: float = 0.99,
        learning_rate: float | Schedule = 0.1,
        algorithm: str = "lambda",
        trace: str = "tree_backup",
        n: int | None = None,
        trace_lambda: float | None = None,
        trace_type: str = "accumulating",
        behaviour_policy: str | float | BehaviourCallable | None = None,
        online: bool = True,
        seed: int | None = None,
    ) -> None:
        if learning_rate is None:  # only `load` leaves it unset (a callable is not saved) until it is given again
            raise TypeError("learning_rate must be a float > 0 or a callable schedule, got None")
        n_states = _discrete_size(env.observation_space, "observation")
        n_actions = _discrete_size(env.action_space, "action")
        self.env: gym.Env | None = env
        self._configure(
            n_states, n_actions, ent_coef, reference_policy, gamma, learning_rate, algorithm, trace, n, trace_lambda,
            trace_type, behaviour_policy, online, seed,
        )  # fmt: skip

    # ------------------------------------------------------------------ setup and validation
    def _configure(
        self,
        n_states: int,
        n_actions: int,
        ent_coef: float,
        reference_policy: ArrayLike | None,
        gamma: float,
        learning_rate: float | Schedule | None,
        algorithm: str,
        trace: str,
        n: int | None,
        trace_lambda: float | None,
        trace_type: str,
        behaviour_policy: str | float | BehaviourCallable | None,
        online: bool,
        seed: int | None,
    ) -> None:
        _check_options(ent_coef, gamma, learning_rate, algorithm, trace, n, trace_lambda, trace_type)
        _check_behaviour_policy(behaviour_policy)
        if not isinstance(online, bool):
            raise TypeError(f"online must be a bool, got {online!r}")

        self.n_states, self.n_actions = n_states, n_actions
        self.ent_coef = float(ent_coef)
        self.reference_policy = None if reference_policy is None else np.asarray(reference_policy, dtype=np.float64)
        self.log_prior = reference_log_prior(reference_policy, n_states, n_actions)
        self._log_prior_rows: list[list[float]] = self.log_prior.tolist()
        self.gamma = float(gamma)
        # Python numbers (NumPy scalars are accepted too), so that `save` can write the options as JSON
        self.learning_rate = float(learning_rate) if _is_real(learning_rate) else learning_rate
        self.algorithm = algorithm
        self.trace = trace
        self.n = (3 if n is None else int(n)) if algorithm == "n_step" else None
        default_lambda = {"one_step": 0.0, "n_step": 1.0, "lambda": 0.9}[algorithm]
        self.trace_lambda = default_lambda if trace_lambda is None else float(trace_lambda)
        self.trace_type = trace_type
        self.behaviour_policy = float(behaviour_policy) if _is_real(behaviour_policy) else behaviour_policy
        self.online = online
        self.seed = None if seed is None else int(seed)

        self.q_table = np.zeros((n_states, n_actions))
        self.traces = np.zeros((n_states, n_actions))
        self.visit_counts = np.zeros((n_states, n_actions), dtype=np.int64)
        self.num_timesteps = 0
        self.num_episodes = 0
        self._total_timesteps = 0
        self._learning = False  # inside `learn`, where a learning-rate schedule has a progress
        self._rng = np.random.default_rng(seed)
        self._needs_env_seed = True
        self._last_obs: int | None = None
        self._episode_start = True
        self._q_read = self.q_table  # the table TD errors are computed from: a frozen copy when online=False
        self._window: deque[_Transition] = deque()
        self._td_errors: list[float] = []
        self._td_episodes: list[int] = []
        self._episode_returns: list[float] = []
        self._episode_lengths: list[int] = []
        self._current_return = 0.0
        self._current_length = 0
        self._missing: set[str] = set()

    def _check_obs(self, obs: Any, name: str = "observation") -> int:
        index = int(obs)
        if not 0 <= index < self.n_states or index != obs:
            raise ValueError(f"{name} must be an integer state in [0, {self.n_states}), got {obs!r}")
        return index

    # ------------------------------------------------------------------ policies
    def _current_learning_rate(self) -> float:
        if self.learning_rate is None:
            raise ValueError(self._missing_message("learning_rate"))
        if callable(self.learning_rate):
            if not self._learning:
                raise ValueError(
                    "learning_rate is a schedule over the steps of learn() (progress_remaining from 1 to 0): "
                    "observe() outside learn() needs a float, e.g. model.learning_rate = 0.1"
                )
            progress_remaining = 1.0 - self.num_timesteps / max(self._total_timesteps, 1)
            return float(self.learning_rate(progress_remaining))
        return float(self.learning_rate)

    def _missing_message(self, name: str) -> str:
        return (
            f"{name} was a callable when this model was saved; callables are not saved. "
            f"Pass it again: TabularSoftQLambda.load(path, env, {name}=...) or set model.{name}"
        )

    def boltzmann_policy(self, obs: ArrayLike | None = None) -> FloatArray:
        """
        Boltzmann (target) policy :math:`\\pi_B(\\cdot|s) = \\mathrm{softmax}(Q(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s))`.

        :param obs: states (any shape); ``None`` for all states
        :return: probabilities ``[..., n_actions]`` (``[n_states, n_actions]`` for ``None``)
        """
        states = slice(None) if obs is None else np.asarray(obs, dtype=np.int64)
        return np.exp(boltzmann_log_probs(self.q_table[states], self.ent_coef, self.log_prior[states]))

    def soft_values(self) -> FloatArray:
        """
        Soft values :math:`V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)` of all states.

        :return: ``[n_states]``
        """
        return soft_value(self.q_table, self.ent_coef, self.log_prior)

    def _soft_row(self, obs: int) -> tuple[float, list[float]]:
        """
        :math:`V(s)` and :math:`\\log\\pi_B(\\cdot|s)` under the table TD errors are computed from, in plain Python
        floats (rows are short: this is the per-step hot path), stable for small :math:`\\tau`.
        """
        q_row = self._q_read[obs].tolist()
        q_max = max(q_row)
        logits = [(q - q_max) / self.ent_coef + lp for q, lp in zip(q_row, self._log_prior_rows[obs], strict=True)]
        z_max = max(logits)
        log_normaliser = z_max + math.log(sum(math.exp(z - z_max) for z in logits))
        return q_max + self.ent_coef * log_normaliser, [z - log_normaliser for z in logits]

    def _behaviour_row(self, obs: int) -> list[float]:
        policy = self.behaviour_policy
        if policy is None:
            return [math.exp(log_prob) for log_prob in self._soft_row(obs)[1]]
        if isinstance(policy, str):  # "uniform"
            return [1.0 / self.n_actions] * self.n_actions
        if callable(policy):
            probs = np.asarray(policy(obs, self._q_read), dtype=np.float64)
            if probs.shape != (self.n_actions,) or np.any(probs < 0) or not math.isclose(probs.sum(), 1.0, abs_tol=1e-6):
                raise ValueError(
                    f"behaviour_policy(obs, q_table) must return {self.n_actions} probabilities summing to 1, got {probs}"
                )
            return probs.tolist()
        q_row = self._q_read[obs].tolist()
        greedy = [q == max(q_row) for q in q_row]
        share = (1.0 - policy) / sum(greedy)
        return [share * is_greedy + policy / self.n_actions for is_greedy in greedy]

    def behaviour_probs(self, obs: int) -> FloatArray:
        """
        Probabilities :math:`\\mu(\\cdot|s)` with which ``learn`` chooses actions in state ``obs``.

        :param obs: a state
        :return: ``[n_actions]``
        """
        return np.asarray(self._behaviour_row(self._check_obs(obs)))

    def _sample(self, probs: list[float]) -> int:
        threshold = self._rng.random() * sum(probs)
        cumulative = 0.0
        for action, prob in enumerate(probs):
            cumulative += prob
            if threshold < cumulative:
                return action
        return max(action for action, prob in enumerate(probs) if prob > 0)

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[Any, None]:
        """
        Action(s) of the learned Boltzmann policy (SB3 interface): :math:`\\arg\\max_a Q(s,a)` when ``deterministic``
        (first maximiser on ties), a sample of :math:`\\pi_B(\\cdot|s)` otherwise.

        :param observation: a state, or an array of states
        :param state: unused (no recurrent state), for SB3 compatibility
        :param episode_start: unused, for SB3 compatibility
        :param deterministic: greedy instead of sampled actions
        :return: the action (an ``int`` for a single state, an array for an array of states) and ``None``
        """
        obs = np.asarray(observation)
        if not np.issubdtype(obs.dtype, np.integer) or np.any(obs < 0) or np.any(obs >= self.n_states):
            raise ValueError(f"observation must be integer states in [0, {self.n_states}), got {observation!r}")
        if deterministic:
            actions = self.q_table[obs].argmax(axis=-1)
        else:
            cumulative = np.cumsum(self.boltzmann_policy(obs), axis=-1)
            draws = self._rng.random((*obs.shape, 1)) * cumulative[..., -1:]
            actions = np.minimum((cumulative <= draws).sum(axis=-1), self.n_actions - 1)
        return (int(actions) if obs.ndim == 0 else actions), None

    # ------------------------------------------------------------------ learning
    def set_env(self, env: gym.Env) -> None:
        """
        Set the environment to learn from (after :meth:`load`); its spaces must match the table.

        :param env: a gymnasium environment with the same ``Discrete`` spaces
        """
        sizes = (_discrete_size(env.observation_space, "observation"), _discrete_size(env.action_space, "action"))
        if sizes != (self.n_states, self.n_actions):
            raise ValueError(f"env has {sizes} states and actions, the model {(self.n_states, self.n_actions)}")
        self.env = env
        self._last_obs = None

    def _reset_env(self) -> int:
        assert self.env is not None
        seed = self.seed if self._needs_env_seed else None
        self._needs_env_seed = False
        obs, _ = self.env.reset(seed=seed)
        return self._check_obs(obs)

    def learn(self: SelfTabularSoftQLambda, total_timesteps: int, reset_num_timesteps: bool = True) -> SelfTabularSoftQLambda:
        """
        Learn online for ``total_timesteps`` environment steps, acting with ``behaviour_policy``.

        A new episode is started when ``reset_num_timesteps`` is True or no episode is running; otherwise the running
        episode (with its traces) continues.

        :param total_timesteps: number of environment steps
        :param reset_num_timesteps: restart the step counter (and the learning-rate schedule) as SB3 does
        :return: the trained model
        """
        if self.env is None:
            raise ValueError("this model has no env: pass env to TabularSoftQLambda.load(path, env) or call set_env(env)")
        for name in sorted(self._missing):
            if getattr(self, name) is None:
                raise ValueError(self._missing_message(name))
        self._learning = True
        try:
            if (reset_num_timesteps or self._last_obs is None) and not self._episode_start:
                # An episode was running: it ends here, cut short like a truncation. Its pending n-step updates are
                # made now, with the learning rate at the end of the previous learn() (before the counter restarts).
                alpha = self._current_learning_rate()
                while self._window:
                    self._n_step_update(alpha)
                self._end_episode()
            if reset_num_timesteps:
                self.num_timesteps = 0
            self._total_timesteps = self.num_timesteps + int(total_timesteps)
            obs = self._reset_env() if reset_num_timesteps or self._last_obs is None else self._last_obs
            while self.num_timesteps < self._total_timesteps:
                probs = self._behaviour_row(obs)
                action = self._sample(probs)
                next_obs, reward, terminated, truncated, _ = self.env.step(action)
                next_state = self._check_obs(next_obs)
                self.observe(obs, action, float(reward), next_state, bool(terminated), bool(truncated), float(probs[action]))
                self.num_timesteps += 1
                obs = self._reset_env() if terminated or truncated else next_state
        finally:
            self._learning = False
        self._last_obs = obs
        return self

    def observe(
        self,
        obs: int,
        action: int,
        reward: float,
        next_obs: int,
        terminated: bool,
        truncated: bool = False,
        behaviour_prob: float | None = None,
    ) -> float:
        """
        Learn from one transition :math:`(s_t, a_t, r_t, s_{t+1})` of the current episode (what ``learn`` calls at
        every step; use it to drive the learner with your own loop or recorded data, with a float
        ``learning_rate``). The first call after an episode ended starts a new episode (traces and n-step window
        reset).

        :param obs: :math:`s_t`
        :param action: :math:`a_t`
        :param reward: :math:`r_t`
        :param next_obs: :math:`s_{t+1}` (the final observation when the episode ends)
        :param terminated: the episode terminated: no bootstrap from :math:`s_{t+1}`
        :param truncated: the episode was cut (time limit): bootstrap from :math:`s_{t+1}`, then end the episode
        :param behaviour_prob: :math:`\\mu(a_t|s_t)`, needed by importance sampling; computed from
            ``behaviour_policy`` when ``None``
        :return: the one-step TD error :math:`\\delta_t` (also appended to :attr:`td_errors`)
        """
        obs, next_obs = self._check_obs(obs), self._check_obs(next_obs, "next_obs")
        if not 0 <= int(action) < self.n_actions:
            raise ValueError(f"action must be in [0, {self.n_actions}), got {action!r}")
        action = int(action)
        if self._episode_start:
            self._start_episode()
        if behaviour_prob is None:
            behaviour_prob = self._behaviour_row(obs)[action] if self.trace == "importance_sampling" else 1.0
        elif not (_is_real(behaviour_prob) and 0.0 < behaviour_prob <= 1.0):
            raise ValueError(f"behaviour_prob (mu(a_t|s_t) of the action taken) must be in (0, 1], got {behaviour_prob!r}")
        alpha = self._current_learning_rate()
        next_value = 0.0 if terminated else self._soft_row(next_obs)[0]
        td_error = reward + self.gamma * next_value - float(self._q_read[obs, action])
        transition = _Transition(obs, action, reward, next_obs, terminated, behaviour_prob)

        if self.algorithm == "one_step":
            self.q_table[obs, action] += alpha * td_error
        elif self.algorithm == "lambda":
            self._trace_update(transition, td_error, alpha)
        else:
            self._window.append(transition)
            if len(self._window) == self.n:
                self._n_step_update(alpha)
        if terminated or truncated:
            while self._window:
                self._n_step_update(alpha)

        self.visit_counts[obs, action] += 1
        self._td_errors.append(float(td_error))
        self._td_episodes.append(self.num_episodes)
        self._current_return += reward
        self._current_length += 1
        if terminated or truncated:
            self._end_episode()
        return float(td_error)

    def _start_episode(self) -> None:
        self.traces[:] = 0.0
        self._window.clear()
        self._q_read = self.q_table if self.online else self.q_table.copy()
        self._current_return, self._current_length = 0.0, 0
        self._episode_start = False

    def _end_episode(self) -> None:
        self._episode_returns.append(self._current_return)
        self._episode_lengths.append(self._current_length)
        self.num_episodes += 1
        self._episode_start = True
        self._q_read = self.q_table

    def _trace_update(self, transition: _Transition, td_error: float, alpha: float) -> None:
        """
        Backward view (eq. 43-44, 46-48): :math:`e \\leftarrow \\gamma\\lambda c_t e`; :math:`e(s_t,a_t) \\mathrel{+}= 1`
        (or :math:`= 1`); :math:`Q \\leftarrow Q + \\alpha\\delta_t e`.
        """
        coef = math.exp(self._soft_row(transition.obs)[1][transition.action]) if self.trace == "tree_backup" else 1.0
        self.traces *= self.gamma * self.trace_lambda * coef
        if self.trace_type == "accumulating":
            self.traces[transition.obs, transition.action] += 1.0
        else:
            self.traces[transition.obs, transition.action] = 1.0
        self.q_table += alpha * td_error * self.traces

    def _n_step_update(self, alpha: float) -> None:
        """
        Update the oldest pair of the window (eq. 23, 27, 36): :math:`Q(s_t,a_t) \\mathrel{+}= \\alpha \\sum_k
        (\\prod_{i=t+1}^{k} \\gamma c_i) \\delta_k`, TD errors and :math:`c_i` from the current table.
        """
        first = self._window[0]
        correction, weight = 0.0, 1.0
        for k, step in enumerate(self._window):
            if k > 0:  # c_k: lambda (Boltzmann), lambda * pi_B (tree backup), lambda * pi_B / mu (importance sampling)
                coef = self.trace_lambda
                if self.trace != "boltzmann":
                    coef *= math.exp(self._soft_row(step.obs)[1][step.action])
                if self.trace == "importance_sampling":
                    coef /= step.behaviour_prob
                weight *= self.gamma * coef
            next_value = 0.0 if step.terminated else self._soft_row(step.next_obs)[0]
            correction += weight * (step.reward + self.gamma * next_value - float(self._q_read[step.obs, step.action]))
        self.q_table[first.obs, first.action] += alpha * correction
        self._window.popleft()

    # ------------------------------------------------------------------ analysis
    @property
    def td_errors(self) -> FloatArray:
        """One-step TD errors :math:`\\delta_t` (the prediction-error signal) of every step learned from, in order."""
        return np.asarray(self._td_errors, dtype=np.float64)

    @property
    def td_episode_index(self) -> NDArray[np.int64]:
        """Episode index (0, 1, ...) of each entry of :attr:`td_errors`."""
        return np.asarray(self._td_episodes, dtype=np.int64)

    @property
    def episode_returns(self) -> FloatArray:
        """Undiscounted return of each finished episode (also of one cut short by a new ``learn`` call)."""
        return np.asarray(self._episode_returns, dtype=np.float64)

    @property
    def episode_lengths(self) -> NDArray[np.int64]:
        """Length of each finished episode (also of one cut short by a new ``learn`` call)."""
        return np.asarray(self._episode_lengths, dtype=np.int64)

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """
        Save the table, options, counters, histories, traces and random state to a NumPy ``.npz`` file (no pickle).

        Callables (a ``learning_rate`` schedule, a ``behaviour_policy`` function) cannot be saved: pass them again to
        :meth:`load`. The environment is not saved either, nor a partly filled n-step window: learning after
        ``load`` starts a new episode.

        :param path: file path (``.npz`` is appended when missing)
        """
        options = {
            "n_states": self.n_states,
            "n_actions": self.n_actions,
            "ent_coef": self.ent_coef,
            "gamma": self.gamma,
            "learning_rate": None if callable(self.learning_rate) else self.learning_rate,
            "learning_rate_is_callable": callable(self.learning_rate) or "learning_rate" in self._missing,
            "algorithm": self.algorithm,
            "trace": self.trace,
            "n": self.n,
            "trace_lambda": None if self.algorithm == "one_step" else self.trace_lambda,
            "trace_type": self.trace_type,
            "behaviour_policy": None if callable(self.behaviour_policy) else self.behaviour_policy,
            "behaviour_policy_is_callable": callable(self.behaviour_policy) or "behaviour_policy" in self._missing,
            "online": self.online,
            "seed": self.seed,
        }
        state = {
            "num_timesteps": self.num_timesteps,
            "num_episodes": self.num_episodes,
            "total_timesteps": self._total_timesteps,
            "needs_env_seed": self._needs_env_seed,
            "rng": self._rng.bit_generator.state,
        }
        np.savez(
            path,
            options=np.array(json.dumps(options)),
            state=np.array(json.dumps(state)),
            q_table=self.q_table,
            traces=self.traces,
            visit_counts=self.visit_counts,
            reference_policy=np.zeros(0) if self.reference_policy is None else self.reference_policy,
            td_errors=self.td_errors,
            td_episode_index=self.td_episode_index,
            episode_returns=self.episode_returns,
            episode_lengths=self.episode_lengths,
        )

    @classmethod
    def load(
        cls: type[SelfTabularSoftQLambda],
        path: str | os.PathLike[str],
        env: gym.Env | None = None,
        learning_rate: float | Schedule | None = None,
        behaviour_policy: str | float | BehaviourCallable | None = None,
    ) -> SelfTabularSoftQLambda:
        """
        Load a model written by :meth:`save`.

        :param path: file path (``.npz`` is appended when missing)
        :param env: environment to continue learning in (optional: ``predict`` needs none)
        :param learning_rate: the learning rate to use from now on; required to ``learn`` when the saved one was a
            callable schedule (which is not saved)
        :param behaviour_policy: the behaviour policy to use from now on; required to ``learn`` when the saved one was a
            callable (which is not saved)
        :return: the model
        """
        path = os.fspath(path)
        if not os.path.exists(path) and os.path.exists(path + ".npz"):
            path = path + ".npz"
        with np.load(path, allow_pickle=False) as data:
            options = json.loads(str(data["options"]))
            state = json.loads(str(data["state"]))
            arrays = {key: np.array(data[key]) for key in data.files if key not in ("options", "state")}
        missing = set()
        if learning_rate is None:
            learning_rate = options["learning_rate"]
            if options["learning_rate_is_callable"]:
                missing.add("learning_rate")
        if behaviour_policy is None:
            behaviour_policy = options["behaviour_policy"]
            if options["behaviour_policy_is_callable"]:
                missing.add("behaviour_policy")
        for name in sorted(missing):
            warnings.warn(f"{name} was a callable and was not saved: pass {name}=... to load() (or set it) before learn()")
        model = cls.__new__(cls)
        model.env = None
        reference = arrays["reference_policy"]
        model._configure(
            options["n_states"], options["n_actions"], options["ent_coef"], reference if reference.size else None,
            options["gamma"], learning_rate, options["algorithm"], options["trace"], options["n"], options["trace_lambda"],
            options["trace_type"], behaviour_policy, options["online"], options["seed"],
        )  # fmt: skip
        model._missing = missing
        model.q_table[:] = arrays["q_table"]
        model.traces[:] = arrays["traces"]
        model.visit_counts[:] = arrays["visit_counts"]
        model._td_errors = arrays["td_errors"].tolist()
        model._td_episodes = arrays["td_episode_index"].tolist()
        model._episode_returns = arrays["episode_returns"].tolist()
        model._episode_lengths = arrays["episode_lengths"].tolist()
        model.num_timesteps = state["num_timesteps"]
        model.num_episodes = state["num_episodes"]
        model._total_timesteps = state["total_timesteps"]
        model._needs_env_seed = state["needs_env_seed"]
        model._rng.bit_generator.state = state["rng"]
        if env is not None:
            model.set_env(env)
        return model
