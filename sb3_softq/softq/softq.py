import io
import math
import numbers
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple, TypeVar, cast

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.preprocessing import get_action_dim, get_obs_shape
from stable_baselines3.common.save_util import load_from_zip_file
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, PyTorchObs, Schedule, TensorDict
from stable_baselines3.common.utils import LinearSchedule, get_parameters_by_name, obs_as_tensor, polyak_update
from stable_baselines3.her.her_replay_buffer import HerReplayBuffer
from torch.nn import functional as F

from sb3_softq.common.buffers import SequenceReplayBuffer
from sb3_softq.common.checks import (
    check_gradient_steps,
    check_learning_rate,
    check_number,
    check_train_freq,
    check_training_finite,
)
from sb3_softq.common.reference import is_state_dependent, make_log_prior_fn, validate_reference_probs
from sb3_softq.common.returns import check_munchausen, munchausen_rewards
from sb3_softq.common.soft import boltzmann_log_probs, entropy, kl_divergence, soft_value
from sb3_softq.common.temperature import TemperatureSpec
from sb3_softq.softq.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, SoftQPolicy

SelfSoftQ = TypeVar("SelfSoftQ", bound="SoftQ")

#: Default ``target_entropy`` for ``ent_coef="auto"``, as a fraction of the maximum entropy log|A|.
DEFAULT_TARGET_ENTROPY_FRACTION = 0.3


class TrainingBatch(NamedTuple):
    """
    What one gradient step regresses: online Q-values of every critic onto soft TD targets; and what the returns
    computed beside the targets that the logged statistics use (so that nothing is computed twice).
    """

    q_values: th.Tensor  # [n_critics, N, n_actions], online, with gradient
    actions: th.Tensor  # [N] long
    targets: th.Tensor  # [N], no gradient
    weights: th.Tensor | None  # [N] mask of positions to train on (None: all)
    observations: PyTorchObs  # the N states, where the temperature update and the statistics evaluate log pibar(.|s)
    # Multi-step returns over windows [B, T] (B * T = N): the trace coefficients c_{k+1} they used, and the buffer's
    # `continues` and `valid` masks (SoftQLambda; None for one-step targets)
    trace_coefs: th.Tensor | None = None
    continues: th.Tensor | None = None
    valid: th.Tensor | None = None
    # 0-d bool: whether a trace continued onto a step stored without its behaviour probability (None: not checked)
    missing_behaviour_probs: th.Tensor | None = None


class SoftQ(OffPolicyAlgorithm):
    """
    Soft Q-learning (soft DQN / SQN): entropy-regularised Q-learning for discrete actions.

    The defaults are those of ``SoftQLambda`` where the two share a parameter (chosen by one study on classic
    control and MinAtar; documentation, "Tuning studies", "The defaults"), not DQN's Atari-scale ones: an Atari
    run takes the ``atari`` entry of ``hyperparams/softq.yml``.

    Papers: Schulman et al. 2017, "Equivalence Between Policy Gradients and Soft Q-Learning"
    (https://arxiv.org/abs/1704.06440); Haarnoja et al. 2017, "Reinforcement Learning with Deep Energy-Based Policies";
    the one-step case of "Soft Q(λ)" (eq. 10-11).

    The network regresses :math:`Q(s_t, a_t)` onto the soft one-step target

    .. math:: y_t = r_t + \\gamma (1 - \\mathrm{terminated}_t)\\, V(s_{t+1}), \\qquad
        V(s) = \\tau \\log \\sum_a \\bar\\pi(a|s) \\exp(\\bar Q(s,a)/\\tau),

    where :math:`\\bar Q` is the minimum over the target critics, and acts with the Boltzmann policy
    :math:`\\pi_B(a|s) \\propto \\bar\\pi(a|s) \\exp(Q(s,a)/\\tau)`
    (optionally mixed with an :math:`\\varepsilon`-uniform policy).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, MultiInputPolicy)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate, it can be a function of the current progress remaining (from 1 to 0)
    :param buffer_size: size of the replay buffer
    :param learning_starts: how many steps of the model to collect transitions for before learning starts
        (actions are uniformly random during that time, as in SB3)
    :param batch_size: Minibatch size for each gradient update
    :param tau: the soft update coefficient ("Polyak update", between 0 and 1) default 1 for hard update
    :param gamma: the discount factor
    :param train_freq: Update the model every ``train_freq`` steps. Alternatively pass a tuple of frequency and unit
        like ``(5, "step")`` or ``(2, "episode")``.
    :param gradient_steps: How many gradient steps to do after each rollout (see ``train_freq``);
        ``-1`` means as many gradient steps as steps done in the environment during the rollout.
    :param replay_buffer_class: Replay buffer class to use. If ``None``, it will be automatically selected.
    :param replay_buffer_kwargs: Keyword arguments to pass to the replay buffer on creation.
    :param optimize_memory_usage: Enable a memory efficient variant of the replay buffer (SB3's)
    :param n_steps: must be 1. Multi-step soft returns need the entropy terms of the intermediate steps, which
        SB3's n-step buffer (raw reward sums) drops: use :class:`~sb3_softq.SoftQLambda` instead.
    :param target_update_interval: update the target network every ``target_update_interval`` environment steps.
    :param ent_coef: Temperature :math:`\\tau` of the entropy regularisation. ``"auto"`` learns it (log-parameterised,
        as in SAC) so that the entropy of :math:`\\pi_B` tracks ``target_entropy``, starting from 1;
        ``"auto_0.1"`` starts from 0.1.
    :param target_entropy: target entropy of :math:`\\pi_B` (nats) when ``ent_coef`` is learned. ``"auto"`` is
        ``0.3 * log|A|`` (``DEFAULT_TARGET_ENTROPY_FRACTION``). SAC-discrete's ``0.98 * log|A|`` asks for an almost
        uniform policy, so the temperature grows until the Boltzmann policy ignores Q; a fraction of the maximum
        entropy keeps exploration while letting the policy become nearly greedy where Q is clear. The fraction was
        chosen with the other defaults (documentation, "Tuning studies", "The defaults").
    :param reference_policy: the reference ("default") policy :math:`\\bar\\pi` of the KL regulariser:
        ``None`` for uniform (maximum-entropy RL), a vector of action probabilities, or a state-dependent prior:
        a callable mapping observation tensors to log-probabilities ``[batch, n_actions]``, or an SB3 policy / model
        with a categorical distribution (e.g. a pretrained PPO model for KL-regularised fine-tuning). A state-dependent
        prior is not saved with the model: pass it again with ``SoftQ.load(path, reference_policy=prior)``.
    :param n_critics: number of Q-networks; targets and the Boltzmann policy use their minimum (clipped double Q).
    :param exploration_fraction: fraction of entire training period over which the uniform-mixing rate
        :math:`\\varepsilon` is annealed
    :param exploration_initial_eps: initial :math:`\\varepsilon` mixed on top of Boltzmann sampling (0: off)
    :param exploration_final_eps: final :math:`\\varepsilon`
    :param munchausen_coef: :math:`\\alpha \\in [0, 1]`, the weight of the Munchausen term (Vieillard, Pietquin and
        Geist 2020, "Munchausen Reinforcement Learning"); 0, the default, turns it off, M-DQN uses 0.9. The reward of
        every target gets the scaled log-probability of the stored action under the target network's Boltzmann policy:

        .. math:: r'_t = r_t + \\alpha \\max\\big(\\tau \\log \\pi_B(a_t|s_t),\\ l_0\\big),

        so that with a uniform prior the target is M-DQN's (see :func:`sb3_softq.common.returns.munchausen_rewards`).
        It costs one more target-network forward pass per gradient step.
    :param munchausen_clip: :math:`l_0 < 0`, the floor of the Munchausen term (M-DQN: -1)
    :param max_grad_norm: The maximum value for the gradient clipping
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
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
    exploration_schedule: Schedule
    policy: SoftQPolicy

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
        if n_steps != 1 or (replay_buffer_class is not None and issubclass(replay_buffer_class, NStepReplayBuffer)):
            raise ValueError(
                f"`n_steps` must be 1 for {type(self).__name__} (got {n_steps}): SB3's n-step buffer sums raw rewards and "
                "would drop the entropy terms of the intermediate steps, which is wrong for soft Q-learning. "
                "Use SoftQLambda for multi-step soft returns, e.g. "
                "SoftQLambda(..., sequence_length=n, trace='tree_backup') (or trace='boltzmann', trace_lambda=1.0 for the "
                "on-policy n-step soft return)."
            )
        if not isinstance(target_entropy, str) and not isinstance(ent_coef, str):  # a float: a fixed temperature
            warnings.warn(
                f"`target_entropy` ({target_entropy!r}) is only used with a learned temperature (ent_coef='auto' or "
                f"'auto_<init>'): with ent_coef={ent_coef!r} it is ignored"
            )
        super().__init__(
            policy,
            env,
            learning_rate,
            buffer_size,
            learning_starts,
            batch_size,
            tau,
            gamma,
            train_freq,
            gradient_steps,
            action_noise=None,
            replay_buffer_class=replay_buffer_class,
            replay_buffer_kwargs=replay_buffer_kwargs,
            optimize_memory_usage=optimize_memory_usage,
            n_steps=1,
            policy_kwargs=policy_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            sde_support=False,
            support_multi_env=True,
        )
        # Checked here rather than by SB3 (`supported_action_spaces`), whose assertion is not a ValueError
        if env is not None and not isinstance(self.action_space, spaces.Discrete):
            raise ValueError(
                f"{type(self).__name__} needs a Discrete action space, but the env's is {self.action_space}: "
                "soft Q-learning takes the log-sum-exp of Q over all actions"
            )
        self.ent_coef = ent_coef
        self.target_entropy = target_entropy
        self.reference_policy = reference_policy
        self.n_critics = n_critics
        self.exploration_initial_eps = exploration_initial_eps
        self.exploration_final_eps = exploration_final_eps
        self.exploration_fraction = exploration_fraction
        self.target_update_interval = target_update_interval
        self.munchausen_coef = munchausen_coef
        self.munchausen_clip = munchausen_clip
        self.max_grad_norm = max_grad_norm
        # For updating the target network with multiple envs
        self._n_calls = 0
        # Weight of the uniform policy mixed into the Boltzmann policy during collection
        self.exploration_rate = 0.0
        # Behaviour probability mu(a_t|s_t) of the last actions taken (one per env)
        self._last_behaviour_probs: np.ndarray | None = None
        # True when the model was trained with a state-dependent prior (which is not saved)
        self._state_dependent_reference = False
        # Saved with the model, so that `load()` refuses a file saved by another algorithm (see _check_hyperparameters)
        self._algorithm_name = type(self).__name__

        if _init_setup_model:
            self._setup_model()

    @property
    def n_actions(self) -> int:
        assert isinstance(self.action_space, spaces.Discrete)
        return int(self.action_space.n)

    @property
    def ent_coef_optimizer(self) -> th.optim.Optimizer | None:
        """The optimiser of a learned temperature (``None`` when it is fixed), held by ``policy.temperature``; saved
        under this name, as SB3's SAC saves its own."""
        return self.policy.temperature.optimizer

    def _check_hyperparameters(self) -> None:
        """
        Raise a ``ValueError`` (a ``TypeError`` for a Munchausen parameter that is not a number) naming the first argument
        out of its range. Called by :meth:`_setup_model`, so that the arguments given to ``load()`` are checked as well as
        those given to the constructor, and a file saved by another algorithm is refused before anything is built.
        """
        if self._algorithm_name != type(self).__name__:
            raise ValueError(
                f"This file holds a {self._algorithm_name} model, which {type(self).__name__}.load() cannot load "
                f"(expected a {type(self).__name__} model): use {self._algorithm_name}.load()"
            )
        # Also the temperature's Adam: an infinite or NaN rate would make tau NaN at its first step
        self.learning_rate = check_learning_rate(self.learning_rate)
        for name, low, high, integer in (
            ("buffer_size", 1, math.inf, True),
            ("learning_starts", 0, math.inf, True),
            ("batch_size", 1, math.inf, True),
            ("gamma", 0, 1, False),
            ("target_update_interval", 1, math.inf, True),
            ("n_critics", 1, math.inf, True),
            ("exploration_initial_eps", 0, 1, False),
            ("exploration_final_eps", 0, 1, False),
            ("exploration_fraction", 0, 1, False),
        ):
            setattr(self, name, check_number(name, getattr(self, name), low, high, integer=integer))
        check_number("max_grad_norm", self.max_grad_norm, 0, low_open=True)
        self.tau = check_number("tau", self.tau, 0, 1, low_open=True, hint=" (0 would never update the target network)")
        self.train_freq = check_train_freq(self.train_freq)
        self.gradient_steps = check_gradient_steps(self.gradient_steps)
        self._stats_window_size = check_number("stats_window_size", self._stats_window_size, 1, integer=True)
        self.munchausen_coef, self.munchausen_clip = check_munchausen(self.munchausen_coef, self.munchausen_clip)
        if self.policy_kwargs.get("n_critics", self.n_critics) != self.n_critics:
            raise ValueError("Pass `n_critics` to the algorithm, not in `policy_kwargs`")
        # The algorithm sets these policy arguments from its own (see _setup_model)
        for key, argument in (("ent_coef", "ent_coef"), ("reference_probs", "reference_policy")):
            if key in self.policy_kwargs:
                raise ValueError(f"Pass `{argument}` to the algorithm, not `{key}` in `policy_kwargs`")

    def _setup_model(self) -> None:
        self._check_hyperparameters()
        max_entropy = math.log(self.n_actions)
        if self.target_entropy == "auto":
            self.target_entropy = DEFAULT_TARGET_ENTROPY_FRACTION * max_entropy
        elif isinstance(self.target_entropy, bool) or not (
            isinstance(self.target_entropy, numbers.Real) and 0.0 <= self.target_entropy <= max_entropy
        ):
            raise ValueError(
                f'`target_entropy` must be "auto" or a float in [0, log|A|] = [0, {max_entropy:.4g}], '
                f"got {self.target_entropy!r}"
            )
        self.target_entropy = float(self.target_entropy)

        reference_probs = None
        if self.reference_policy is not None and not is_state_dependent(self.reference_policy):
            # Kept as a list of floats: saved with the model's data as JSON rather than as a pickled array or tensor
            self.reference_policy = reference_probs = validate_reference_probs(self.reference_policy, self.n_actions)
        # SB3's `OffPolicyAlgorithm._setup_model`, with the algorithm's own policy arguments passed beside the user's
        # `policy_kwargs` (as SB3's on-policy algorithms pass `use_sde`): SB3 saves `policy_kwargs` and compares them
        # with those given to `load()`, so they stay the user's.
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        if self.replay_buffer is None:
            self.replay_buffer = self._make_replay_buffer()
        policy = self.policy_class(
            self.observation_space,
            self.action_space,
            self.lr_schedule,
            n_critics=self.n_critics,
            ent_coef=self.ent_coef,  # parsed and held by the policy's `temperature`
            reference_probs=reference_probs,
            **self.policy_kwargs,
        )
        self.policy = cast(SoftQPolicy, policy.to(self.device))
        self._convert_train_freq()
        self._create_aliases()
        # Copy running stats, see SB3 GH issue #996
        self.batch_norm_stats = get_parameters_by_name(self.q_nets, ["running_"])
        self.batch_norm_stats_target = get_parameters_by_name(self.q_nets_target, ["running_"])
        self.exploration_schedule = LinearSchedule(
            self.exploration_initial_eps, self.exploration_final_eps, self.exploration_fraction
        )
        self._setup_reference_policy()

        if self.n_envs > self.target_update_interval:
            warnings.warn(
                "The number of environments used is greater than the target network "
                f"update interval ({self.n_envs} > {self.target_update_interval}), "
                "therefore the target network will be updated after each call to env.step() "
                f"which corresponds to {self.n_envs} steps."
            )

    def _make_replay_buffer(self, **kwargs: Any) -> ReplayBuffer:
        """
        A new replay buffer of ``replay_buffer_class`` (SB3's default for the observation space when ``None``), built
        as SB3 builds it. Subclasses override this to choose their own default class and arguments.

        :param kwargs: arguments of the buffer that the algorithm sets beside the user's ``replay_buffer_kwargs``
            (which are left as given: they are saved)
        :return: the buffer
        """
        if self.replay_buffer_class is None:
            is_dict = isinstance(self.observation_space, spaces.Dict)
            self.replay_buffer_class = DictReplayBuffer if is_dict else ReplayBuffer
        replay_buffer_kwargs = {**self.replay_buffer_kwargs, **kwargs}
        if issubclass(self.replay_buffer_class, HerReplayBuffer):
            replay_buffer_kwargs["env"] = self.env  # not among the saved arguments, as in SB3
        return self.replay_buffer_class(
            self.buffer_size,
            self.observation_space,
            self.action_space,
            device=self.device,
            n_envs=self.n_envs,
            optimize_memory_usage=self.optimize_memory_usage,
            **replay_buffer_kwargs,
        )

    def _setup_reference_policy(self) -> None:
        if self.reference_policy is not None:
            self._state_dependent_reference = is_state_dependent(self.reference_policy)
        if is_state_dependent(self.reference_policy):
            # Checked on observations sampled from the env's space (and an SB3 policy's spaces against the env's)
            log_prior_fn = make_log_prior_fn(
                self.reference_policy, self.n_actions, self.device, self.observation_space, self.action_space
            )
            self.policy.set_reference_policy(log_prior_fn)
        elif self._state_dependent_reference:
            # Loaded from a model trained with a state-dependent prior that was not given again
            message = (
                f"This {type(self).__name__} model was trained with a state-dependent `reference_policy`, which is not "
                f"saved with the model. Pass it again when loading: {type(self).__name__}.load(path, reference_policy=prior)"
            )
            warnings.warn(message)

            def missing_prior(obs: PyTorchObs) -> th.Tensor:
                raise ValueError(message)

            self.policy.set_reference_policy(missing_prior)

    def _create_aliases(self) -> None:
        self.q_nets = self.policy.q_nets
        self.q_nets_target = self.policy.q_nets_target

    def _on_step(self) -> None:
        """
        Update the exploration rate and the target networks if needed.
        Called in ``collect_rollouts()`` after each step in the environment.
        """
        self._n_calls += 1
        # Each call to step() corresponds to n_envs transitions
        if self._n_calls % max(self.target_update_interval // self.n_envs, 1) == 0:
            polyak_update(self.q_nets.parameters(), self.q_nets_target.parameters(), self.tau)
            polyak_update(self.batch_norm_stats, self.batch_norm_stats_target, 1.0)

        self.exploration_rate = self.exploration_schedule(self._current_progress_remaining)
        self.logger.record("rollout/exploration_rate", self.exploration_rate)

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """
        Sample the behaviour policy: uniform during the first ``learning_starts`` steps, then
        :math:`\\mu = (1 - \\varepsilon)\\pi_B + \\varepsilon/|A|`. Records :math:`\\mu(a_t|s_t)` of the sampled actions.

        :param learning_starts: Number of steps before learning for the warm-up phase.
        :param action_noise: unused (discrete actions)
        :param n_envs: number of environments
        :return: the actions to take and to store in the replay buffer (the same for discrete actions)
        """
        if self.num_timesteps < learning_starts:
            actions = np.array([self.action_space.sample() for _ in range(n_envs)])
            self._last_behaviour_probs = np.full(n_envs, 1.0 / self.n_actions, dtype=np.float32)
            return actions, actions
        assert self._last_obs is not None, "self._last_obs was not set"
        # The env's batch of observations, already vectorised (and channel-first): SB3's `policy.obs_to_tensor`, made for
        # any observation given to `predict()`, would check and reshape it and look up the policy's device again
        obs_tensor = obs_as_tensor(self._last_obs, self.device)
        actions, behaviour_probs = self.policy.sample_behaviour(obs_tensor, self.exploration_rate)
        self._last_behaviour_probs = np.asarray(behaviour_probs, dtype=np.float32)  # float32 already: not copied
        return actions, actions

    def _training_batch(self, replay_data: Any, ent_coef: th.Tensor) -> TrainingBatch:
        """
        Online Q-values and one-step soft targets :math:`y = r + \\gamma(1 - \\mathrm{terminated})V(s')` for a batch of
        transitions (SB3's ``dones`` here exclude time-limit truncations, which bootstrap).

        :param replay_data: samples from SB3's replay buffer (``ReplayBufferSamples`` or ``DictReplayBufferSamples``)
        :param ent_coef: temperature
        :return: what to regress
        """
        with th.no_grad():
            next_q_values = self.policy.target_q_values(replay_data.next_observations)
            next_values = soft_value(next_q_values, ent_coef, self.policy.log_prior(replay_data.next_observations))
            rewards = replay_data.rewards.flatten()
            if self.munchausen_coef > 0.0:
                rewards = self._munchausen_rewards(rewards, replay_data.observations, replay_data.actions.flatten(), ent_coef)
            targets = rewards + self.gamma * (1 - replay_data.dones.flatten()) * next_values
        return TrainingBatch(
            q_values=self.policy.all_q_values(replay_data.observations),
            actions=replay_data.actions.long().flatten(),
            targets=targets,
            weights=None,
            observations=replay_data.observations,
        )

    def _munchausen_rewards(
        self, rewards: th.Tensor, observations: PyTorchObs, actions: th.Tensor, ent_coef: th.Tensor
    ) -> th.Tensor:
        """
        The rewards with the Munchausen term :math:`\\alpha \\max(\\tau \\log \\pi_B(a|s), l_0)`, with :math:`\\pi_B`
        the Boltzmann policy of the target networks (minimum over critics, the prior included) at the stored states.

        :param rewards: :math:`r`, ``[N]``
        :param observations: :math:`s`, ``N`` states
        :param actions: :math:`a`, ``[N]``
        :param ent_coef: the current temperature
        :return: :math:`r'`, ``[N]``
        """
        return munchausen_rewards(
            rewards,
            self.policy.target_q_values(observations),
            actions,
            ent_coef,
            self.munchausen_coef,
            self.munchausen_clip,
            log_prior=self.policy.log_prior(observations),
        )

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        temperature = self.policy.temperature
        optimizers = [self.policy.optimizer]
        if temperature.optimizer is not None:
            optimizers.append(temperature.optimizer)
        self._update_learning_rate(optimizers)

        if gradient_steps <= 0:  # as SB3's `learn()` skips such calls
            return
        # Everything logged stays on the device until the single read at the end (see _record_train_stats)
        losses, ent_coef_losses = [], []
        missing_behaviour_probs: th.Tensor | None = None
        last_policy: tuple[th.Tensor | None, th.Tensor] | None = None  # log prior and log pi_B of the last temperature step
        ent_coef = temperature.value
        q_net_parameters = list(self.policy.q_nets.parameters())  # listed once, not at every gradient step
        for _ in range(gradient_steps):
            replay_data = self.replay_buffer.sample(batch_size, env=self._vec_normalize_env)  # type: ignore[union-attr]
            if temperature.learned:  # the temperature changes at every step
                ent_coef = temperature.value
            batch = self._training_batch(replay_data, ent_coef)
            if batch.missing_behaviour_probs is not None:
                missing = batch.missing_behaviour_probs
                missing_behaviour_probs = missing if missing_behaviour_probs is None else missing_behaviour_probs | missing

            current_q_values = batch.q_values.gather(2, batch.actions.expand(self.n_critics, -1).unsqueeze(2)).squeeze(2)
            # Huber loss of every critic (mean over the batch, or over its valid positions), summed over critics
            targets = batch.targets.expand_as(current_q_values)
            if batch.weights is None:
                loss = self.n_critics * F.smooth_l1_loss(current_q_values, targets)
            else:
                td_loss = F.smooth_l1_loss(current_q_values, targets, reduction="none")
                loss = (td_loss * batch.weights).sum() / batch.weights.sum().clamp(min=1.0)
            losses.append(loss.detach())

            self.policy.optimizer.zero_grad()
            loss.backward()
            th.nn.utils.clip_grad_norm_(q_net_parameters, self.max_grad_norm)
            self.policy.optimizer.step()

            if temperature.learned:
                ent_coef_loss, last_policy = self._update_temperature(batch, ent_coef)
                ent_coef_losses.append(ent_coef_loss)

        self._n_updates += gradient_steps
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        stats: dict[str, th.Tensor | float] = {"train/loss": th.stack(losses).mean()}
        if ent_coef_losses:
            stats["train/ent_coef_loss"] = th.stack(ent_coef_losses).mean()
        if self.logger.output_formats:  # computed only where a log is written (SB3's logger has none at verbose=0)
            # The statistics of the last batch; pi_B at its states is that of the last temperature step when there is one
            stats.update(self._policy_stats(batch, ent_coef, last_policy))
        if missing_behaviour_probs is not None:
            stats["missing_behaviour_probs"] = missing_behaviour_probs
        values = self._record_train_stats(stats)
        if values.get("missing_behaviour_probs"):
            # Read with the statistics, after the updates: a check at every step would wait for the device each time
            raise ValueError(
                "The returns need the behaviour probabilities mu(a|s) of the stored actions (trace='importance_sampling' "
                "or 'retrace'), but the replay buffer holds steps added without them"
            )
        # NaN / inf anywhere in a gradient step makes its loss NaN / inf: checked on the means read with the statistics
        check_training_finite(
            {"loss": values["train/loss"], "ent_coef_loss": values.get("train/ent_coef_loss")},
            self.replay_buffer,
            temperature.log_ent_coef,
        )

    def _update_temperature(
        self, batch: TrainingBatch, ent_coef: th.Tensor
    ) -> tuple[th.Tensor, tuple[th.Tensor | None, th.Tensor]]:
        """
        One SAC-style step of the learned temperature on a training batch: lower :math:`\\tau` when :math:`\\pi_B` is
        more random than ``target_entropy``, raise it otherwise (see
        :meth:`~sb3_softq.common.temperature.Temperature.update`).

        :param batch: the training batch of this gradient step
        :param ent_coef: the temperature it was trained with
        :return: the temperature loss (0-d, detached) and :math:`\\log\\bar\\pi`, :math:`\\log\\pi_B` at the batch
            states (for the statistics of the last batch)
        """
        with th.no_grad():  # the prior is evaluated at the batch states only here and for the statistics
            log_prior = self.policy.log_prior(batch.observations)
            log_probs = self._log_probs(batch, ent_coef, log_prior)
            entropy_gap = self._mean(entropy(log_probs), batch.weights) - float(self.target_entropy)
        return self.policy.temperature.update(entropy_gap), (log_prior, log_probs)

    def _record_train_stats(self, stats: Mapping[str, th.Tensor | float]) -> dict[str, float]:
        """
        Read the values of one ``train()`` call back to the host with a single read (one stacked ``tolist()``), and
        record those whose key starts with ``"train/"`` in the logger, in the order of ``stats``. Other keys are
        checks (flags such as ``"missing_behaviour_probs"``, 1.0 when set) that the caller acts on after the read:
        anything else ``train()`` needs from the device joins this dict, so that a training step never waits for the
        device more than once.

        :param stats: 0-d tensors (or Python numbers) by key
        :return: every value as a Python float, by key
        """
        if not stats:
            return {}
        device = next((value.device for value in stats.values() if isinstance(value, th.Tensor)), None)
        # Stacking promotes to the widest type (a boolean flag to float); every value is 0-d
        tensors = [value if isinstance(value, th.Tensor) else th.tensor(value, device=device) for value in stats.values()]
        values = dict(zip(stats, th.stack(tensors).detach().tolist(), strict=True))
        for key, value in values.items():
            if key.startswith("train/"):
                self.logger.record(key, value)
        return values

    @staticmethod
    def _mean(values: th.Tensor, weights: th.Tensor | None) -> th.Tensor:
        if weights is None:
            return values.mean()
        return (values * weights).sum() / weights.sum().clamp(min=1.0)

    def _log_probs(self, batch: TrainingBatch, ent_coef: th.Tensor, log_prior: th.Tensor | None) -> th.Tensor:
        """:return: :math:`\\log\\pi_B` at the batch states, from the (detached) online Q-values"""
        return boltzmann_log_probs(batch.q_values.detach().amin(dim=0), ent_coef, log_prior)

    def _policy_stats(
        self, batch: TrainingBatch, ent_coef: th.Tensor, policy: tuple[th.Tensor | None, th.Tensor] | None = None
    ) -> dict[str, th.Tensor | float]:
        """
        :param batch: a training batch (the last of a ``train()`` call)
        :param ent_coef: the temperature it was trained with
        :param policy: :math:`\\log\\bar\\pi` and :math:`\\log\\pi_B` at its states when already computed (by the
            temperature step), else ``None``
        :return: the temperature, and the entropy, KL to the reference and Q-values of the batch, as 0-d tensors by
            logger key
        """
        with th.no_grad():
            if policy is None:
                log_prior = self.policy.log_prior(batch.observations)
                policy = log_prior, self._log_probs(batch, ent_coef, log_prior)
            log_prior, log_probs = policy
            q_taken = batch.q_values.detach().amin(dim=0).gather(1, batch.actions.unsqueeze(1)).squeeze(1)
            return {
                "train/ent_coef": ent_coef,
                "train/entropy": self._mean(entropy(log_probs), batch.weights),
                "train/kl_to_reference": self._mean(kl_divergence(log_probs, log_prior), batch.weights),
                "train/q_mean": self._mean(q_taken, batch.weights),
            }

    def learn(
        self: SelfSoftQ,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 4,
        tb_log_name: str = "SoftQ",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfSoftQ:
        return super().learn(
            total_timesteps=total_timesteps,
            callback=callback,
            log_interval=log_interval,
            tb_log_name=tb_log_name,
            reset_num_timesteps=reset_num_timesteps,
            progress_bar=progress_bar,
        )

    @classmethod
    def load(  # type: ignore[override]
        cls: type[SelfSoftQ],
        path: str | pathlib.Path | io.BufferedIOBase,
        env: GymEnv | None = None,
        device: th.device | str = "auto",
        custom_objects: dict[str, Any] | None = None,
        print_system_info: bool = False,
        force_reset: bool = True,
        **kwargs: Any,
    ) -> SelfSoftQ:
        """
        Load a model from a zip file, as SB3's ``load`` does (the keyword arguments are set on the model).

        The temperature is part of the saved state. An ``ent_coef`` different from the saved one replaces it as if
        the model had been built with it (a float fixes the temperature, ``"auto"`` / ``"auto_<init>"`` learns it
        again from 1.0 / ``<init>`` with a new optimiser); the saved ``ent_coef`` itself keeps the saved (possibly
        learned) temperature and its optimiser state.

        :param path: path to the file (or a file-like) where to load the agent from
        :param env: the new environment to run the loaded model on (can be None if you only need prediction)
        :param device: device on which the code should run
        :param custom_objects: objects to replace upon loading, see SB3's ``BaseAlgorithm.load``
        :param print_system_info: whether to print system info from the saved model and the current system info
        :param force_reset: force a call to ``reset()`` before training to avoid unexpected behavior
        :param kwargs: extra arguments to change the model when loading
        :return: the loaded model
        """
        # Set as keyword arguments or through custom_objects alike (SB3 applies both before building the model)
        custom_objects = dict(custom_objects or {})
        for name in ("ent_coef", "reference_policy"):
            if name in custom_objects:
                kwargs.setdefault(name, custom_objects.pop(name))
        if "reference_policy" in kwargs:  # given again: it replaces the saved one, whatever that was
            kwargs["_state_dependent_reference"] = is_state_dependent(kwargs["reference_policy"])
        given_ent_coef = "ent_coef" in kwargs
        ent_coef = kwargs.pop("ent_coef", None)
        spec = TemperatureSpec.parse(ent_coef) if given_ent_coef else None
        model = super().load(
            path,
            env=env,
            device=device,
            custom_objects=custom_objects,
            print_system_info=print_system_info,
            force_reset=force_reset,
            **kwargs,
        )
        if spec is not None and ent_coef != model.ent_coef:
            model.ent_coef = ent_coef  # type: ignore[assignment]
            model.policy.temperature.reset(spec)
        return model

    def set_parameters(
        self,
        load_path_or_dict: str | TensorDict,
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """
        Load parameters from a zip file or from a dict of state dicts, as SB3's ``set_parameters`` does (see
        ``get_parameters``).

        A fixed temperature (``ent_coef`` a float) is a hyperparameter of this model, as its learning rate is: it is
        kept, and the temperature optimiser of a model that learned its temperature is not loaded.

        :param load_path_or_dict: location of the saved data (path or file-like), or a nested dictionary of state dicts
        :param exact_match: whether the parameters must be those of this model exactly (every optimiser included)
        :param device: device on which the code should run
        """
        temperature = self.policy.temperature
        if temperature.learned:
            super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)
            return
        params = load_path_or_dict
        if not isinstance(params, dict):
            _, params, _ = load_from_zip_file(params, device=device, load_data=False)
        params = {name: state for name, state in params.items() if name != "ent_coef_optimizer"}
        super().set_parameters(params, exact_match=exact_match, device=device)
        temperature.reset_value()

    def load_replay_buffer(self, path: str | pathlib.Path | io.BufferedIOBase, truncate_last_traj: bool = True) -> None:
        """
        Load a replay buffer from a pickle file, as SB3 does, refusing (with a ``ValueError``, the model's buffer
        unchanged) one that this model cannot train on: a buffer of another class (the ``SequenceReplayBuffer`` of
        :class:`~sb3_softq.SoftQLambda` in :class:`~sb3_softq.SoftQ` and the reverse), of another number of envs, or
        of other observation or action shapes.

        :param path: Path to the pickled replay buffer.
        :param truncate_last_traj: as in SB3 (see :class:`~sb3_softq.SoftQLambda` for its sequence buffer)
        """
        previous = self.replay_buffer
        super().load_replay_buffer(path, truncate_last_traj)
        try:
            self._check_replay_buffer(self.replay_buffer)
        except ValueError:
            self.replay_buffer = previous
            raise

    def _check_replay_buffer(self, buffer: Any) -> None:
        """Raise a ``ValueError`` naming what was expected unless this model can train on ``buffer``."""
        expected = self.replay_buffer_class
        assert expected is not None
        sequences = issubclass(expected, SequenceReplayBuffer)
        if not isinstance(buffer, expected) or isinstance(buffer, SequenceReplayBuffer) != sequences:
            raise ValueError(
                f"The replay buffer is a {type(buffer).__name__}, but {type(self).__name__} needs a {expected.__name__}"
            )
        if buffer.n_envs != self.n_envs:
            raise ValueError(
                f"The replay buffer holds the steps of {buffer.n_envs} envs, but this model runs {self.n_envs} "
                f"(expected n_envs={self.n_envs})"
            )
        for name, found, wanted in (
            ("observation shape", buffer.obs_shape, get_obs_shape(self.observation_space)),
            ("action dimension", buffer.action_dim, get_action_dim(self.action_space)),
        ):
            if found != wanted:
                raise ValueError(f"The replay buffer's {name} is {found}, but this model's is {wanted}")

    def _excluded_save_params(self) -> list[str]:
        excluded = [*super()._excluded_save_params(), "q_nets", "q_nets_target", "_last_behaviour_probs"]
        if is_state_dependent(self.reference_policy):
            excluded.append("reference_policy")
        return excluded

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        state_dicts = ["policy", "policy.optimizer"]
        if self.ent_coef_optimizer is not None:
            state_dicts.append("ent_coef_optimizer")
        return state_dicts, []
