from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor, NatureCNN
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.dqn.policies import QNetwork
from torch import nn

from sb3_softq.common.checks import check_probabilities_finite
from sb3_softq.common.reference import LogPriorFn
from sb3_softq.common.soft import boltzmann_log_probs, boltzmann_logits
from sb3_softq.common.temperature import Temperature, TemperatureSpec


def default_optimizer_kwargs(
    optimizer_class: type[th.optim.Optimizer], optimizer_kwargs: dict[str, Any] | None = None
) -> dict[str, Any]:
    """
    The optimizer's keyword arguments, with PyTorch's fused implementation of Adam / AdamW (``fused=True``)
    unless the user chose an implementation (``fused`` or ``foreach``).

    The fused step runs as one kernel instead of a dozen small operations per parameter: on CPU, with the small
    networks of classic control, it halves the time of the optimizer step. The update itself is Adam's.

    :param optimizer_class: The optimizer class
    :param optimizer_kwargs: The user's keyword arguments (not modified)
    :return: a new dict
    """
    kwargs = dict(optimizer_kwargs or {})
    if issubclass(optimizer_class, (th.optim.Adam, th.optim.AdamW)) and "fused" not in kwargs and "foreach" not in kwargs:
        kwargs["fused"] = True
    return kwargs


class SoftQPolicy(BasePolicy):
    """
    Policy class for soft Q-learning: ``n_critics`` Q-networks (SB3's :class:`~stable_baselines3.dqn.policies.QNetwork`),
    their target copies, the temperature and the reference policy, which together define the Boltzmann policy

    .. math:: \\pi_B(a|s) = \\mathrm{softmax}\\big(\\min_i Q_i(s,\\cdot)/\\tau + \\log\\bar\\pi(\\cdot|s)\\big)(a).

    The temperature is the submodule ``temperature`` (:class:`~sb3_softq.common.temperature.Temperature`: the value
    :math:`\\log\\tau`, and its own optimiser when ``ent_coef`` is learned, never :attr:`optimizer`), so a saved
    policy samples from the same :math:`\\pi_B`.

    :param observation_space: Observation space
    :param action_space: Action space (``Discrete``)
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: The hidden layers of each Q-network
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use
    :param features_extractor_kwargs: Keyword arguments to pass to the features extractor
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer;
        Adam and AdamW run fused unless ``fused`` or ``foreach`` is given (see :func:`default_optimizer_kwargs`)
    :param n_critics: Number of Q-networks; targets and the Boltzmann policy use their minimum
    :param ent_coef: Temperature :math:`\\tau`: a float > 0 (fixed), ``"auto"`` or ``"auto_<init>"`` (learned, see
        :meth:`~sb3_softq.common.temperature.TemperatureSpec.parse`)
    :param reference_probs: Probabilities of a state-independent reference policy :math:`\\bar\\pi` over actions,
        ``None`` for uniform. State-dependent priors are set with :meth:`set_reference_policy`.
    """

    action_space: spaces.Discrete
    reference_log_probs: th.Tensor | None
    q_nets: nn.ModuleList
    q_nets_target: nn.ModuleList

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = FlattenExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        ent_coef: float | str = 1.0,
        reference_probs: list[float] | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            features_extractor_class,
            features_extractor_kwargs,
            optimizer_class=optimizer_class,
            optimizer_kwargs=default_optimizer_kwargs(optimizer_class, optimizer_kwargs),
            normalize_images=normalize_images,
        )
        if net_arch is None:
            net_arch = [] if features_extractor_class == NatureCNN else [64, 64]
        self.net_arch = net_arch
        self.activation_fn = activation_fn
        self.n_critics = n_critics
        self.reference_probs = reference_probs
        self.net_args = {
            "observation_space": self.observation_space,
            "action_space": self.action_space,
            "net_arch": self.net_arch,
            "activation_fn": self.activation_fn,
            "normalize_images": normalize_images,
        }
        # Adam with the defaults of `optimizer` (fused), when the temperature is learned
        self.temperature = Temperature(
            TemperatureSpec.parse(ent_coef), lr_schedule(1), default_optimizer_kwargs(th.optim.Adam)
        )
        log_prior = None if reference_probs is None else th.log(th.as_tensor(reference_probs, dtype=th.float32))
        # A buffer (it follows the policy's device) for a fixed prior; None means uniform. Not in the state dict: the
        # prior comes from `reference_probs`, so that `load(path, reference_policy=...)` can replace it.
        self.register_buffer("reference_log_probs", log_prior, persistent=False)
        self._log_prior_fn: LogPriorFn | None = None
        self._build(lr_schedule)

    def _build(self, lr_schedule: Schedule) -> None:
        """
        Create the Q-networks, their targets (in evaluation mode) and the optimizer over the Q-networks.

        :param lr_schedule: Learning rate schedule; ``lr_schedule(1)`` is the initial learning rate
        """
        self.q_nets = nn.ModuleList([self.make_q_net() for _ in range(self.n_critics)])
        self.q_nets_target = nn.ModuleList([self.make_q_net() for _ in range(self.n_critics)])
        self.q_nets_target.load_state_dict(self.q_nets.state_dict())
        self.q_nets_target.train(False)
        self.optimizer = self.optimizer_class(  # type: ignore[call-arg]
            self.q_nets.parameters(),
            lr=lr_schedule(1),
            **self.optimizer_kwargs,
        )

    def make_q_net(self) -> QNetwork:
        # Each network gets its own features extractor
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return QNetwork(**net_args).to(self.device)

    @property
    def ent_coef(self) -> th.Tensor:
        """The temperature :math:`\\tau` (a 0-d tensor, detached)."""
        return self.temperature.value

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Files saved by sb3_softq 0.1.0 hold log(tau) as the policy's own `log_ent_coef`; it is now the parameter of
        # the `temperature` submodule (PyTorch's hook for renamed state, as BatchNorm uses it)
        old_key, new_key = prefix + "log_ent_coef", prefix + "temperature.log_ent_coef"
        if old_key in state_dict and new_key not in state_dict:
            state_dict[new_key] = state_dict.pop(old_key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def set_reference_policy(self, log_prior_fn: LogPriorFn | None) -> None:
        """
        Use a state-dependent reference policy :math:`\\bar\\pi(\\cdot|s)`.

        :param log_prior_fn: maps raw observations (before SB3's preprocessing, as the model receives them) to
            log-probabilities ``[batch, n_actions]``; ``None`` goes back to the fixed prior given at construction
            (uniform if none)
        """
        self._log_prior_fn = log_prior_fn

    def log_prior(self, obs: PyTorchObs) -> th.Tensor | None:
        """
        :param obs: observations (batch)
        :return: :math:`\\log\\bar\\pi(\\cdot|s)`, ``[batch, n_actions]`` or ``[n_actions]``; ``None`` for uniform
        """
        if self._log_prior_fn is not None:
            with th.no_grad():
                # In the dtype and on the device of the Q-values, whatever the function returns
                return self._log_prior_fn(obs).to(device=self.device, dtype=self.temperature.log_ent_coef.dtype)
        return self.reference_log_probs

    @staticmethod
    def _min_over_critics(q_nets: nn.ModuleList, obs: PyTorchObs) -> th.Tensor:
        # Iterated, not sliced: a slice of a ModuleList builds a new ModuleList at every call
        critics = iter(q_nets)
        q_values = next(critics)(obs)
        for q_net in critics:
            q_values = th.minimum(q_values, q_net(obs))
        return q_values

    def q_values(self, obs: PyTorchObs) -> th.Tensor:
        """:return: :math:`\\min_i Q_i(s,\\cdot)` of the online networks, ``[batch, n_actions]``"""
        return self._min_over_critics(self.q_nets, obs)

    def target_q_values(self, obs: PyTorchObs) -> th.Tensor:
        """:return: :math:`\\min_i \\bar Q_i(s,\\cdot)` of the target networks, ``[batch, n_actions]``"""
        return self._min_over_critics(self.q_nets_target, obs)

    def all_q_values(self, obs: PyTorchObs) -> th.Tensor:
        """:return: the online Q-values of every critic, ``[n_critics, batch, n_actions]``"""
        if self.n_critics == 1:
            return self.q_nets[0](obs).unsqueeze(0)
        return th.stack([q_net(obs) for q_net in self.q_nets])

    def action_log_probs(self, obs: PyTorchObs) -> th.Tensor:
        """:return: :math:`\\log\\pi_B(\\cdot|s)` from the online networks, ``[batch, n_actions]``"""
        return boltzmann_log_probs(self.q_values(obs), self.ent_coef, self.log_prior(obs))

    def behaviour_probs(self, obs: PyTorchObs, exploration_rate: float = 0.0) -> th.Tensor:
        """
        The exploration policy :math:`\\mu = (1 - \\varepsilon)\\,\\pi_B + \\varepsilon / |A|`.

        :param obs: observations (batch)
        :param exploration_rate: :math:`\\varepsilon`, the weight of the uniform policy mixed in
        :return: probabilities ``[batch, n_actions]``
        """
        probs = th.softmax(boltzmann_logits(self.q_values(obs), self.ent_coef, self.log_prior(obs)), dim=-1)
        if exploration_rate > 0.0:
            probs = (1.0 - exploration_rate) * probs + exploration_rate / probs.shape[-1]
        return probs

    def sample_behaviour(self, obs: PyTorchObs, exploration_rate: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """
        Sample actions from :math:`\\mu = (1 - \\varepsilon)\\,\\pi_B + \\varepsilon / |A|`.

        Inverse-CDF sampling in NumPy, with NumPy's global generator (seeded by SB3's ``set_random_seed``, as DQN's
        epsilon-greedy exploration is): for the few states of one environment step, this is several times faster
        than sampling with PyTorch operations.

        :param obs: observations (batch)
        :param exploration_rate: :math:`\\varepsilon`
        :return: the actions ``[batch]`` and their probabilities :math:`\\mu(a|s)` ``[batch]``
        :raises ~sb3_softq.common.checks.NonFiniteError: when the probabilities hold NaN or inf
        """
        with th.no_grad():
            probs = self.behaviour_probs(obs, exploration_rate).cpu().numpy()
        check_probabilities_finite(probs, obs)  # NaN would otherwise draw action 0 whatever the policy
        cumulative = probs.cumsum(axis=1)
        # Scaled to the total, which rounding leaves a little off 1: an action of probability 0 is never drawn
        uniform = np.random.random((probs.shape[0], 1)) * cumulative[:, -1:]
        actions = np.minimum((cumulative <= uniform).sum(axis=1), probs.shape[1] - 1)
        return actions, probs[np.arange(len(actions)), actions]

    def forward(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        return self._predict(obs, deterministic=deterministic)

    def _predict(self, obs: PyTorchObs, deterministic: bool = True) -> th.Tensor:
        """
        :param obs: observations (batch)
        :param deterministic: if True the mode of :math:`\\pi_B`, i.e. :math:`\\arg\\max_a Q(s,a)` (with a reference
            policy, :math:`\\arg\\max_a Q(s,a)/\\tau + \\log\\bar\\pi(a|s)`), else a sample of :math:`\\pi_B`
        :return: actions ``[batch]``
        """
        if not deterministic:
            return th.as_tensor(self.sample_behaviour(obs)[0], device=self.device)
        if self._log_prior_fn is None and self.reference_log_probs is None:
            return self.q_values(obs).argmax(dim=1).reshape(-1)
        # The mode of pi_B: argmax_a Q(s,a)/tau + log pibar(a|s)
        log_probs = self.action_log_probs(obs)
        return log_probs.argmax(dim=1).reshape(-1)

    def set_training_mode(self, mode: bool) -> None:
        """
        Put the online networks in training or evaluation mode (the targets stay in evaluation mode).

        :param mode: if true, set to training mode, else set to evaluation mode
        """
        self.q_nets.train(mode)
        self.training = mode

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(
            dict(
                net_arch=self.net_args["net_arch"],
                activation_fn=self.net_args["activation_fn"],
                lr_schedule=self._dummy_schedule,  # dummy lr schedule, not needed for loading policy alone
                optimizer_class=self.optimizer_class,
                optimizer_kwargs=self.optimizer_kwargs,
                features_extractor_class=self.features_extractor_class,
                features_extractor_kwargs=self.features_extractor_kwargs,
                n_critics=self.n_critics,
                ent_coef=float(self.ent_coef),  # the policy alone does not learn its temperature
                reference_probs=self.reference_probs,
            )
        )
        return data


MlpPolicy = SoftQPolicy


class CnnPolicy(SoftQPolicy):
    """
    Policy class for soft Q-learning on image observations (Nature CNN features extractor).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: The hidden layers of each Q-network after the features extractor
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param n_critics: Number of Q-networks
    :param ent_coef: Initial temperature
    :param reference_probs: Probabilities of a state-independent reference policy, ``None`` for uniform
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = NatureCNN,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        ent_coef: float | str = 1.0,
        reference_probs: list[float] | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            n_critics,
            ent_coef,
            reference_probs,
        )


class MultiInputPolicy(SoftQPolicy):
    """
    Policy class for soft Q-learning on Dict observations (combined features extractor).

    :param observation_space: Observation space
    :param action_space: Action space
    :param lr_schedule: Learning rate schedule (could be constant)
    :param net_arch: The hidden layers of each Q-network after the features extractor
    :param activation_fn: Activation function
    :param features_extractor_class: Features extractor to use
    :param normalize_images: Whether to normalize images or not, dividing by 255.0 (True by default)
    :param optimizer_class: The optimizer to use, ``th.optim.Adam`` by default
    :param optimizer_kwargs: Additional keyword arguments, excluding the learning rate, to pass to the optimizer
    :param n_critics: Number of Q-networks
    :param ent_coef: Initial temperature
    :param reference_probs: Probabilities of a state-independent reference policy, ``None`` for uniform
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        lr_schedule: Schedule,
        net_arch: list[int] | None = None,
        activation_fn: type[nn.Module] = nn.ReLU,
        features_extractor_class: type[BaseFeaturesExtractor] = CombinedExtractor,
        features_extractor_kwargs: dict[str, Any] | None = None,
        normalize_images: bool = True,
        optimizer_class: type[th.optim.Optimizer] = th.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
        n_critics: int = 1,
        ent_coef: float | str = 1.0,
        reference_probs: list[float] | None = None,
    ) -> None:
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch,
            activation_fn,
            features_extractor_class,
            features_extractor_kwargs,
            normalize_images,
            optimizer_class,
            optimizer_kwargs,
            n_critics,
            ent_coef,
            reference_probs,
        )
