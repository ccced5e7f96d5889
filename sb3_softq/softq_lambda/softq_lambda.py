import io
import pathlib
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule

from sb3_softq.common.buffers import DictSequenceReplayBuffer, SequenceReplayBuffer, SequenceReplayBufferSamples
from sb3_softq.common.checks import check_number, check_sequence_fits_buffer
from sb3_softq.common.returns import munchausen_rewards, soft_lambda_returns_with_extras, trace_diagnostics
from sb3_softq.common.traces import TRACES, TRACES_NEEDING_BEHAVIOUR_PROBS
from sb3_softq.softq.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SoftQPolicy
from sb3_softq.softq.softq import SoftQ, TrainingBatch

SelfSoftQLambda = TypeVar("SelfSoftQLambda", bound="SoftQLambda")


def _flatten_time(obs: PyTorchObs) -> PyTorchObs:
    """``[B, T, ...] -> [B*T, ...]`` for tensors and dicts of tensors."""
    if isinstance(obs, dict):
        return {key: value.flatten(0, 1) for key, value in obs.items()}
    return obs.flatten(0, 1)


def _next_step(values: th.Tensor) -> th.Tensor:
    """``values[:, k+1]`` at every ``k`` of ``[B, T]`` (the last column repeats; its trace is cut anyway)."""
    return th.cat([values[:, 1:], values[:, -1:]], dim=1)


class SoftQLambda(SoftQ):
    """
    Soft Q(λ): multi-step, off-policy soft Q-learning with eligibility-trace returns (Soft Tree Backup and friends).

    Paper: "Soft Q(λ): a multi-step off-policy method for entropy regularised reinforcement learning using eligibility
    traces" (soft tree backup eq. 14, 17, 30-36, 45-48). The network regresses :math:`Q(s_k, a_k)` at every valid
    position of windows of ``sequence_length`` consecutive steps onto the soft λ-return

    .. math:: G_k = r_k + \\gamma (1 - \\mathrm{terminated}_k)\\big[V(s_{k+1})
        + c_{k+1}\\,(G_{k+1} - \\bar Q(s_{k+1}, a_{k+1}))\\big],

    with :math:`V`, :math:`\\pi_B` and :math:`\\bar Q` from the target networks (minimum over critics) and the trace
    coefficient :math:`c` chosen by ``trace`` (see :func:`sb3_softq.common.returns.soft_lambda_returns`).
    The trace is cut at episode ends and at the end of the window, where the return bootstraps with :math:`V`.

    The defaults (32 windows of 16 steps, :math:`\\lambda = 0.7`, tree backup, learning rate 5e-4, target network
    copied every 250 steps, a 50,000-step buffer, target entropy ``0.3 * log|A|``) were chosen by one study whose
    objective spans CartPole-v1, Acrobot-v1, LunarLander-v3 and MinAtar Breakout (documentation, "Tuning studies",
    "The defaults"); an Atari run takes the ``atari`` entry of ``hyperparams/softq_lambda.yml``.

    Takes every parameter of :class:`~sb3_softq.SoftQ`, plus:

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: size of the replay buffer (in steps)
    :param learning_starts: how many steps of the model to collect transitions for before learning starts
    :param batch_size: number of *sequences* per gradient update (each gives up to ``sequence_length`` targets)
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1) default 1 for hard update
    :param gamma: the discount factor
    :param train_freq: Update the model every ``train_freq`` steps, or a tuple ``(5, "step")`` / ``(2, "episode")``
    :param gradient_steps: How many gradient steps to do after each rollout (``-1``: as many as environment steps)
    :param replay_buffer_class: a :class:`~sb3_softq.common.buffers.SequenceReplayBuffer` subclass, or ``None`` to pick
        ``SequenceReplayBuffer`` / ``DictSequenceReplayBuffer`` from the observation space
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation
    :param optimize_memory_usage: must stay False: the sequence buffer already stores each observation once
    :param n_steps: must be 1 (SB3's n-step buffer); use ``sequence_length`` and ``trace``
    :param target_update_interval: update the target network every ``target_update_interval`` environment steps
    :param ent_coef: temperature :math:`\\tau`: a float, ``"auto"`` or ``"auto_<init>"`` (see ``SoftQ``)
    :param target_entropy: target entropy of :math:`\\pi_B` when ``ent_coef`` is learned
    :param reference_policy: reference policy :math:`\\bar\\pi` (see ``SoftQ``)
    :param n_critics: number of Q-networks; targets use their minimum
    :param exploration_fraction: fraction of the training over which :math:`\\varepsilon` is annealed
    :param exploration_initial_eps: initial :math:`\\varepsilon` mixed on top of Boltzmann sampling (0: off)
    :param exploration_final_eps: final :math:`\\varepsilon`
    :param sequence_length: length T of the windows sampled from the replay buffer (the longest multi-step return)
    :param trace_lambda: :math:`\\lambda \\in [0, 1]`; 0 gives one-step soft Q-learning
    :param trace: ``"tree_backup"`` (:math:`c = \\lambda\\pi_B(a|s)`, off-policy without behaviour probabilities,
        the default), ``"retrace"`` (:math:`\\lambda\\min(1, \\pi_B/\\mu)`), ``"importance_sampling"``
        (:math:`\\lambda\\pi_B/\\mu`) or ``"boltzmann"`` (:math:`\\lambda`, guaranteed to converge only on-policy)
    :param munchausen_coef: :math:`\\alpha \\in [0, 1]`, the weight of the Munchausen term (0, the default, turns it
        off; M-DQN uses 0.9): every reward of the window gets its own term before the recursion,

        .. math:: r'_k = r_k + \\alpha \\max\\big(\\tau \\log \\pi_B(a_k|s_k),\\ l_0\\big),

        with :math:`\\pi_B` the target networks' Boltzmann policy at :math:`s_k`, so that ``trace_lambda=0`` is M-DQN
        and the traces are unchanged. The target networks then evaluate :math:`s_k` besides :math:`s_{k+1}` (one
        forward pass over both).
    :param munchausen_clip: :math:`l_0 < 0`, the floor of the Munchausen term (M-DQN: -1)
    :param max_grad_norm: The maximum value for the gradient clipping
    :param stats_window_size: Window size for the rollout logging
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation
    :param verbose: Verbosity level: 0 for no output, 1 for info messages, 2 for debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[SoftQPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = 5e-4,
        buffer_size: int = 50_000,
        learning_starts: int = 1000,
        batch_size: int = 32,
        tau: float = 1.0,
        gamma: float = 0.99,
        train_freq: int | tuple[int, str] = 4,
        gradient_steps: int = 1,
        replay_buffer_class: type[ReplayBuffer] | None = None,
        replay_buffer_kwargs: dict[str, Any] | None = None,
        optimize_memory_usage: bool = False,
        n_steps: int = 1,
        target_update_interval: int = 250,
        ent_coef: float | str = "auto",
        target_entropy: float | str = "auto",
        reference_policy: Any = None,
        n_critics: int = 1,
        exploration_fraction: float = 0.1,
        exploration_initial_eps: float = 0.0,
        exploration_final_eps: float = 0.0,
        sequence_length: int = 16,
        trace_lambda: float = 0.7,
        trace: str = "tree_backup",
        munchausen_coef: float = 0.0,
        munchausen_clip: float = -1.0,
        max_grad_norm: float = 10,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ) -> None:
        if optimize_memory_usage:
            raise ValueError(
                "`optimize_memory_usage` must be False for SoftQLambda: its sequence replay buffer already stores every "
                "observation once"
            )
        self.sequence_length = sequence_length
        self.trace_lambda = trace_lambda
        self.trace = trace
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            buffer_size=buffer_size,
            learning_starts=learning_starts,
            batch_size=batch_size,
            tau=tau,
            gamma=gamma,
            train_freq=train_freq,
            gradient_steps=gradient_steps,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=False,
            n_steps=n_steps,
            target_update_interval=target_update_interval,
            ent_coef=ent_coef,
            target_entropy=target_entropy,
            reference_policy=reference_policy,
            n_critics=n_critics,
            exploration_fraction=exploration_fraction,
            exploration_initial_eps=exploration_initial_eps,
            exploration_final_eps=exploration_final_eps,
            munchausen_coef=munchausen_coef,
            munchausen_clip=munchausen_clip,
            max_grad_norm=max_grad_norm,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=False,
        )
        if _init_setup_model:
            self._setup_model()
            # At construction only: rl-zoo3's enjoy loads models with a minimal buffer, which only predicts
            check_sequence_fits_buffer(self.sequence_length, self.buffer_size, getattr(self, "n_envs", 1))

    def _check_hyperparameters(self) -> None:
        super()._check_hyperparameters()
        self.sequence_length = check_number("sequence_length", self.sequence_length, 1, integer=True)
        self.trace_lambda = float(check_number("trace_lambda", self.trace_lambda, 0, 1))
        if self.trace not in TRACES:
            raise ValueError(f"`trace` must be one of {', '.join(map(repr, TRACES))}, got {self.trace!r}")
        if self.replay_buffer_class is not None and not (
            isinstance(self.replay_buffer_class, type) and issubclass(self.replay_buffer_class, SequenceReplayBuffer)
        ):
            raise ValueError(
                f"`replay_buffer_class` must be a SequenceReplayBuffer subclass (or None), got {self.replay_buffer_class!r}"
            )
        buffer_length = self.replay_buffer_kwargs.get("sequence_length", self.sequence_length)
        if buffer_length != self.sequence_length:
            raise ValueError(
                f"`replay_buffer_kwargs['sequence_length']` ({buffer_length}) differs from `sequence_length` "
                f"({self.sequence_length}): set `sequence_length` only"
            )

    def _make_replay_buffer(self, **kwargs: Any) -> ReplayBuffer:
        """
        A new sequence replay buffer of ``replay_buffer_class`` (:class:`SequenceReplayBuffer`, or
        :class:`DictSequenceReplayBuffer` for dict observations, when ``None``) that samples windows of
        ``sequence_length``.

        :param kwargs: further arguments of the buffer, beside the user's ``replay_buffer_kwargs``
        :return: the buffer
        """
        if self.replay_buffer_class is None:
            is_dict = isinstance(self.observation_space, spaces.Dict)
            self.replay_buffer_class = DictSequenceReplayBuffer if is_dict else SequenceReplayBuffer
        return super()._make_replay_buffer(sequence_length=self.sequence_length, **kwargs)

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        """SB3's ``_setup_learn``; when it resets the env, the episode of the newest stored step ends there first."""
        if (reset_num_timesteps or self._last_obs is None) and isinstance(self.replay_buffer, SequenceReplayBuffer):
            # The first step of the new episode would otherwise be read as the continuation of the newest stored one
            self.replay_buffer.truncate_last_trajectory()
        return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay buffer from a pickle file, as SB3 does; it samples windows of this model's ``sequence_length``.

        :param path: Path to the pickled replay buffer.
        :param truncate_last_traj: If ``True``, the episode of the newest stored step is taken as finished
            (truncated, see :meth:`~sb3_softq.common.buffers.SequenceReplayBuffer.truncate_last_trajectory`), so that
            the next collected step does not continue it; if ``False``, the next collected step continues that
            episode (the env is in the state that followed it).
        """
        super().load_replay_buffer(path, truncate_last_traj)
        if isinstance(self.replay_buffer, SequenceReplayBuffer):
            self.replay_buffer.sequence_length = self.sequence_length
            if truncate_last_traj:
                self.replay_buffer.truncate_last_trajectory()

    def _store_transition(
        self,
        replay_buffer: ReplayBuffer,
        buffer_action: np.ndarray,
        new_obs: np.ndarray | dict[str, np.ndarray],
        reward: np.ndarray,
        dones: np.ndarray,
        infos: list[dict[str, Any]],
    ) -> None:
        """SB3's ``_store_transition``, also recording the behaviour probabilities :math:`\\mu(a_t|s_t)` of the actions."""
        # SB3's implementation calls `replay_buffer.add(...)` with SB3's arguments only: the buffer takes the
        # probabilities of this step, handed over just before, in that call
        assert isinstance(replay_buffer, SequenceReplayBuffer)
        replay_buffer.set_next_behaviour_probs(self._last_behaviour_probs)
        super()._store_transition(replay_buffer, buffer_action, new_obs, reward, dones, infos)

    def _training_batch(self, replay_data: Any, ent_coef: th.Tensor) -> TrainingBatch:
        """
        Online Q-values at every position of the sampled windows and their soft λ-return targets
        (:func:`~sb3_softq.common.returns.soft_lambda_returns_with_extras`), weighted by the window's validity mask.

        :param replay_data: windows from the sequence replay buffer, ``[B, T, ...]``
        :param ent_coef: temperature
        :return: what to regress, flattened to ``B*T`` positions, with the trace coefficients of the returns and the
            windows' masks ``[B, T]`` for the statistics
        """
        assert isinstance(replay_data, SequenceReplayBufferSamples)
        batch_size, sequence_length = replay_data.rewards.shape
        next_observations = _flatten_time(replay_data.next_observations)
        with th.no_grad():
            rewards = replay_data.rewards
            if self.munchausen_coef > 0.0:
                rewards, next_q_values, next_log_prior = self._munchausen_window(replay_data, next_observations, ent_coef)
            else:
                next_q_values = self.policy.target_q_values(next_observations).view(batch_size, sequence_length, -1)
                next_log_prior = self.policy.log_prior(next_observations)
            if next_log_prior is not None:
                next_log_prior = next_log_prior.expand(batch_size * sequence_length, -1).view_as(next_q_values)
            next_actions = _next_step(replay_data.actions.long())
            next_behaviour_probs = missing_behaviour_probs = None
            if self.trace in TRACES_NEEDING_BEHAVIOUR_PROBS:
                next_behaviour_probs = _next_step(replay_data.behaviour_probs)
                # Only where the trace continues is mu(a_{k+1}|s_{k+1}) used (NaN * 0 would still be NaN); checked by
                # train() when it reads its statistics
                missing_behaviour_probs = th.isnan(th.where(replay_data.continues != 0, next_behaviour_probs, 0.0)).any()
            targets, trace_coefs = soft_lambda_returns_with_extras(
                rewards,
                next_q_values,
                next_actions,
                replay_data.terminated,
                replay_data.continues,
                self.gamma,
                self.trace_lambda,
                ent_coef,
                trace=self.trace,
                next_log_prior=next_log_prior,
                next_behaviour_probs=next_behaviour_probs,
            )

        observations = _flatten_time(replay_data.observations)
        return TrainingBatch(
            q_values=self.policy.all_q_values(observations),
            actions=replay_data.actions.long().flatten(),
            targets=targets.flatten(),
            weights=replay_data.valid.flatten(),
            observations=observations,
            trace_coefs=trace_coefs,
            continues=replay_data.continues,
            valid=replay_data.valid,
            missing_behaviour_probs=missing_behaviour_probs,
        )

    def _munchausen_window(
        self, replay_data: SequenceReplayBufferSamples, next_observations: PyTorchObs, ent_coef: th.Tensor
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """
        The window's rewards with the Munchausen term, each position its own (see :func:`munchausen_rewards`), and the
        target Q-values and prior at the next states, from one target-network forward pass over the states
        :math:`s_k` and :math:`s_{k+1}` of every position together (and one evaluation of a state-dependent prior).

        :math:`Q(s_k)` is not read from :math:`Q(s_{k+1})` of the previous position: at the first position and after an
        episode end within the window the two states differ.

        :param replay_data: windows from the sequence replay buffer, ``[B, T, ...]``
        :param next_observations: the next observations, flattened to ``B*T``
        :param ent_coef: the current temperature
        :return: the rewards ``[B, T]``, the target Q-values at the next states ``[B, T, n_actions]`` and the prior at
            the next states (``[B*T, n_actions]``, ``[n_actions]`` or ``None`` for uniform)
        """
        batch_size, sequence_length = replay_data.rewards.shape
        n_positions = batch_size * sequence_length
        observations = _flatten_time(replay_data.observations)
        both: PyTorchObs
        if isinstance(observations, dict):
            both = {key: th.cat([value, next_observations[key]]) for key, value in observations.items()}  # type: ignore[index]
        else:
            both = th.cat([observations, next_observations])  # type: ignore[list-item]
        q_values = self.policy.target_q_values(both).view(2, batch_size, sequence_length, -1)
        log_prior = self.policy.log_prior(both)
        log_prior_now, next_log_prior = log_prior, log_prior
        if log_prior is not None and log_prior.dim() == 2:  # state-dependent
            log_prior_now = log_prior[:n_positions].view_as(q_values[0])
            next_log_prior = log_prior[n_positions:]
        rewards = munchausen_rewards(
            replay_data.rewards,
            q_values[0],
            replay_data.actions.long().view(batch_size, sequence_length),
            ent_coef,
            self.munchausen_coef,
            self.munchausen_clip,
            log_prior=log_prior_now,
        )
        return rewards, q_values[1], next_log_prior

    def _policy_stats(
        self, batch: TrainingBatch, ent_coef: th.Tensor, policy: tuple[th.Tensor | None, th.Tensor] | None = None
    ) -> dict[str, th.Tensor | float]:
        """
        :return: SoftQ's statistics plus the trace diagnostics of the batch (mean trace coefficient, effective trace
            length :math:`\\mathbb{E}_t[\\sum_{k \\ge t} \\prod_{i=t+1}^{k} c_i]`, fraction of cut traces), from the
            trace coefficients that its returns used
        """
        stats = super()._policy_stats(batch, ent_coef, policy)
        assert batch.trace_coefs is not None and batch.continues is not None
        for key, value in trace_diagnostics(batch.trace_coefs, batch.continues, batch.valid).items():
            stats[f"train/{key}"] = value  # a 0-d tensor on the device, or a float (see _record_train_stats)
        return stats

    def learn(
        self: SelfSoftQLambda,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SoftQLambda",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSoftQLambda:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )
