"""
Tabular Soft Q(λ): the online one-step, n-step and eligibility-trace soft Q-learning algorithms.

The learner holds the table and drives an environment; what it is made of lives in one module each: its options
(:mod:`~sb3_softq.tabular.options`), the trace rule (:mod:`~sb3_softq.tabular.traces`), the behaviour policies and
sampling (:mod:`~sb3_softq.tabular.policies`), the update rules (:mod:`~sb3_softq.tabular.updates`), the recorded TD
errors and returns (:mod:`~sb3_softq.tabular.history`) and the file format (:mod:`~sb3_softq.tabular.persistence`).
"""

import math
import os
from collections import deque
from typing import Any, TypeVar

import gymnasium as gym
import numpy as np
from numpy.typing import ArrayLike, NDArray

from sb3_softq.tabular.history import LearningHistory

# ALGORITHMS, TRACE_TYPES, TRACES and BehaviourCallable were defined in this module: importable from it as before
from sb3_softq.tabular.options import ALGORITHMS as ALGORITHMS
from sb3_softq.tabular.options import (
    DEFAULT_N,
    DEFAULT_TRACE_LAMBDA,
    BehaviourPolicy,
    Schedule,
    check_behaviour_policy,
    check_behaviour_prob,
    check_index,
    check_options,
    discrete_size,
    is_real,
)
from sb3_softq.tabular.options import TRACE_TYPES as TRACE_TYPES
from sb3_softq.tabular.options import BehaviourCallable as BehaviourCallable
from sb3_softq.tabular.persistence import load_model, missing_callable_message, save_model
from sb3_softq.tabular.policies import behaviour_probs_row, sample_action, sample_actions
from sb3_softq.tabular.soft import (
    FloatArray,
    boltzmann_log_probs,
    reference_log_prior,
    soft_value,
    soft_value_and_log_probs_row,
)
from sb3_softq.tabular.traces import TRACES as TRACES
from sb3_softq.tabular.traces import needs_behaviour_probs
from sb3_softq.tabular.updates import (
    Transition,
    eligibility_trace_update,
    n_step_update,
    one_step_update,
    soft_td_error,
)

SelfTabularSoftQLambda = TypeVar("SelfTabularSoftQLambda", bound="TabularSoftQLambda")


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
        behaviour_policy: BehaviourPolicy = None,
        online: bool = True,
        seed: int | None = None,
    ) -> None:
        if learning_rate is None:  # only `load` leaves it unset (a callable is not saved) until it is given again
            raise TypeError("learning_rate must be a float > 0 or a callable schedule, got None")
        n_states = discrete_size(env.observation_space, "observation")
        n_actions = discrete_size(env.action_space, "action")
        self.env: gym.Env | None = env
        self._configure(
            n_states, n_actions, ent_coef, reference_policy, gamma, learning_rate, algorithm, trace, n, trace_lambda,
            trace_type, behaviour_policy, online, seed,
        )  # fmt: skip

    # ------------------------------------------------------------------ setup
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
        behaviour_policy: BehaviourPolicy,
        online: bool,
        seed: int | None,
    ) -> None:
        check_options(ent_coef, gamma, learning_rate, algorithm, trace, n, trace_lambda, trace_type)
        check_behaviour_policy(behaviour_policy)
        if not isinstance(online, bool):
            raise TypeError(f"online must be a bool, got {online!r}")

        self.n_states, self.n_actions = n_states, n_actions
        self.ent_coef = float(ent_coef)
        self.reference_policy = None if reference_policy is None else np.asarray(reference_policy, dtype=np.float64)
        self.log_prior = reference_log_prior(reference_policy, n_states, n_actions)
        self._log_prior_rows: list[list[float]] = self.log_prior.tolist()
        self.gamma = float(gamma)
        # Python numbers (NumPy scalars are accepted too), so that `save` can write the options as JSON
        self.learning_rate = float(learning_rate) if is_real(learning_rate) else learning_rate
        self.algorithm = algorithm
        self.trace = trace
        self.n = (DEFAULT_N if n is None else int(n)) if algorithm == "n_step" else None
        self.trace_lambda = DEFAULT_TRACE_LAMBDA[algorithm] if trace_lambda is None else float(trace_lambda)
        self.trace_type = trace_type
        self.behaviour_policy = float(behaviour_policy) if is_real(behaviour_policy) else behaviour_policy
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
        self._window: deque[Transition] = deque()
        self._history = LearningHistory()
        self._missing: set[str] = set()  # callables that `load` could not restore

    def _check_obs(self, obs: Any, name: str = "observation") -> int:
        return check_index(obs, self.n_states, name)

    def _current_learning_rate(self) -> float:
        if self.learning_rate is None:
            raise ValueError(missing_callable_message("learning_rate"))
        if callable(self.learning_rate):
            if not self._learning:
                raise ValueError(
                    "learning_rate is a schedule over the steps of learn() (progress_remaining from 1 to 0): "
                    "observe() outside learn() needs a float, e.g. model.learning_rate = 0.1"
                )
            progress_remaining = 1.0 - self.num_timesteps / max(self._total_timesteps, 1)
            return float(self.learning_rate(progress_remaining))
        return float(self.learning_rate)

    # ------------------------------------------------------------------ policies
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
        """:math:`V(s)` and :math:`\\log\\pi_B(\\cdot|s)` under the table TD errors are computed from (the per-step path)."""
        return soft_value_and_log_probs_row(self._q_read[obs].tolist(), self.ent_coef, self._log_prior_rows[obs])

    def _behaviour_row(self, obs: int) -> list[float]:
        if self.behaviour_policy is None:
            return [math.exp(log_prob) for log_prob in self._soft_row(obs)[1]]
        return behaviour_probs_row(self.behaviour_policy, obs, self._q_read)

    def behaviour_probs(self, obs: int) -> FloatArray:
        """
        Probabilities :math:`\\mu(\\cdot|s)` with which ``learn`` chooses actions in state ``obs``.

        :param obs: a state
        :return: ``[n_actions]``
        """
        return np.asarray(self._behaviour_row(self._check_obs(obs)))

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
            actions = sample_actions(self.boltzmann_policy(obs), self._rng.random((*obs.shape, 1)))
        return (int(actions) if obs.ndim == 0 else actions), None

    # ------------------------------------------------------------------ learning
    def set_env(self, env: gym.Env) -> None:
        """
        Set the environment to learn from (after :meth:`load`); its spaces must match the table.

        :param env: a gymnasium environment with the same ``Discrete`` spaces
        """
        sizes = (discrete_size(env.observation_space, "observation"), discrete_size(env.action_space, "action"))
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
                raise ValueError(missing_callable_message(name))
        self._learning = True
        try:
            if (reset_num_timesteps or self._last_obs is None) and not self._episode_start:
                # An episode was running: it ends here, cut short like a truncation. Its pending n-step updates are
                # made now, with the learning rate at the end of the previous learn() (before the counter restarts).
                self._flush_window(self._current_learning_rate())
                self._end_episode()
            if reset_num_timesteps:
                self.num_timesteps = 0
            self._total_timesteps = self.num_timesteps + int(total_timesteps)
            obs = self._reset_env() if reset_num_timesteps or self._last_obs is None else self._last_obs
            while self.num_timesteps < self._total_timesteps:
                probs = self._behaviour_row(obs)
                action = sample_action(probs, self._rng.random())
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
            behaviour_prob = self._behaviour_row(obs)[action] if needs_behaviour_probs(self.trace) else 1.0
        else:
            behaviour_prob = check_behaviour_prob(behaviour_prob)
        alpha = self._current_learning_rate()
        transition = Transition(obs, action, reward, next_obs, terminated, behaviour_prob)
        td_error = soft_td_error(transition, self._q_read, self.gamma, self._soft_row)

        if self.algorithm == "one_step":
            one_step_update(self.q_table, transition, td_error, alpha)
        elif self.algorithm == "lambda":
            eligibility_trace_update(
                self.q_table, self.traces, transition, td_error, alpha, self.gamma, self.trace_lambda, self.trace,
                self.trace_type == "replacing", self._soft_row,
            )  # fmt: skip
        else:
            self._window.append(transition)
            if len(self._window) == self.n:
                self._n_step_update(alpha)
        if terminated or truncated:
            self._flush_window(alpha)

        self.visit_counts[obs, action] += 1
        self._history.record_step(td_error, self.num_episodes, reward)
        if terminated or truncated:
            self._end_episode()
        return float(td_error)

    def _n_step_update(self, alpha: float) -> None:
        n_step_update(
            self.q_table, self._q_read, self._window, alpha, self.gamma, self.trace_lambda, self.trace, self._soft_row
        )

    def _flush_window(self, alpha: float) -> None:
        """Make the pending n-step updates of an episode that ends (windows cut at its end)."""
        while self._window:
            self._n_step_update(alpha)

    def _start_episode(self) -> None:
        self.traces[:] = 0.0
        self._window.clear()
        self._q_read = self.q_table if self.online else self.q_table.copy()
        self._history.start_episode()
        self._episode_start = False

    def _end_episode(self) -> None:
        self._history.end_episode()
        self.num_episodes += 1
        self._episode_start = True
        self._q_read = self.q_table

    # ------------------------------------------------------------------ analysis
    @property
    def td_errors(self) -> FloatArray:
        """One-step TD errors :math:`\\delta_t` (the prediction-error signal) of every step learned from, in order."""
        return self._history.td_errors

    @property
    def td_episode_index(self) -> NDArray[np.int64]:
        """Episode index (0, 1, ...) of each entry of :attr:`td_errors`."""
        return self._history.td_episode_index

    @property
    def episode_returns(self) -> FloatArray:
        """Undiscounted return of each finished episode (also of one cut short by a new ``learn`` call)."""
        return self._history.episode_returns

    @property
    def episode_lengths(self) -> NDArray[np.int64]:
        """Length of each finished episode (also of one cut short by a new ``learn`` call)."""
        return self._history.episode_lengths

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike[str]) -> None:
        """
        Save the table, options, counters, histories, traces and random state to a NumPy ``.npz`` file (no pickle).

        Callables (a ``learning_rate`` schedule, a ``behaviour_policy`` function) cannot be saved: pass them again to
        :meth:`load`. The environment is not saved either, nor a partly filled n-step window: learning after
        ``load`` starts a new episode.

        :param path: file path (``.npz`` is appended when missing)
        """
        save_model(self, path)

    @classmethod
    def load(
        cls: type[SelfTabularSoftQLambda],
        path: str | os.PathLike[str],
        env: gym.Env | None = None,
        learning_rate: float | Schedule | None = None,
        behaviour_policy: BehaviourPolicy = None,
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
        return load_model(cls, path, env, learning_rate, behaviour_policy)
