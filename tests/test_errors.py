"""Bad input gets a clear error naming the parameter and what is allowed; nothing is silently ignored."""

import copy
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import DQN, PPO
from stable_baselines3.common.buffers import DictReplayBuffer, NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.logger import Logger

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.common.buffers import DictSequenceReplayBuffer, SequenceReplayBuffer
from sb3_softq.common.checks import NonFiniteError, check_training_finite, non_finite_causes

ALGOS = [SoftQ, SoftQLambda]


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(ent_coef=0.0), "ent_coef"),
        (dict(ent_coef=-1.0), "ent_coef"),
        (dict(ent_coef="automatic"), "ent_coef"),
        (dict(ent_coef="auto_-0.1"), "ent_coef"),
        (dict(ent_coef=float("nan")), "ent_coef"),
        (dict(target_entropy=-0.5), "target_entropy"),
        (dict(target_entropy=5.0), "target_entropy"),
        (dict(reference_policy=[0.5, 0.25, 0.25]), "reference_policy"),
        (dict(reference_policy=[1.0, 0.0]), "reference_policy"),
        (dict(reference_policy=[0.6, 0.6]), "reference_policy"),
        (dict(reference_policy=[-0.5, 1.5]), "reference_policy"),
        (dict(reference_policy=np.full((3, 2), 0.5)), "reference_policy"),
        (dict(n_critics=0), "n_critics"),
        (dict(n_critics=True), "n_critics"),
        (dict(n_critics=1.5), "n_critics"),
        (dict(gamma=1.5), "gamma"),
        (dict(gamma=-0.1), "gamma"),
        (dict(tau=2.0), "tau"),
        (dict(batch_size=0), "batch_size"),
        (dict(buffer_size=0), "buffer_size"),
        (dict(buffer_size=1000.5), "buffer_size"),
        (dict(learning_starts=-1), "learning_starts"),
        (dict(target_update_interval=0), "target_update_interval"),
        (dict(max_grad_norm=0.0), "max_grad_norm"),
        (dict(max_grad_norm=float("nan")), "max_grad_norm"),
        (dict(target_entropy=None), "target_entropy"),
        (dict(target_entropy="0.1"), "target_entropy"),
        (dict(exploration_final_eps="0.5"), "exploration_final_eps"),
        (dict(n_steps=3), "SoftQLambda"),
        (dict(replay_buffer_class=NStepReplayBuffer), "n_steps|SequenceReplayBuffer"),
        (dict(exploration_initial_eps=1.5), "exploration_initial_eps"),
        (dict(policy_kwargs=dict(ent_coef=3.0)), "ent_coef"),
        (dict(policy_kwargs=dict(reference_probs=[0.9, 0.1])), "reference_policy"),
    ],
)
def test_bad_arguments(model_class: type[SoftQ], kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        model_class("MlpPolicy", "CartPole-v1", **kwargs)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(trace_lambda=1.5), "trace_lambda"),
        (dict(trace_lambda=-0.1), "trace_lambda"),
        (dict(sequence_length=0), "sequence_length"),
        (dict(sequence_length=2.5), "sequence_length"),
        (dict(sequence_length=True), "sequence_length"),
        (dict(trace_lambda="0.9"), "trace_lambda"),
        (dict(trace="watkins"), "trace"),
        (dict(replay_buffer_class=ReplayBuffer), "replay_buffer_class"),
        (dict(optimize_memory_usage=True), "optimize_memory_usage"),
        (dict(replay_buffer_kwargs=dict(sequence_length=4), sequence_length=8), "sequence_length"),
    ],
)
def test_bad_lambda_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SoftQLambda("MlpPolicy", "CartPole-v1", **kwargs)


@pytest.mark.parametrize("model_class", ALGOS)
def test_numpy_numbers_accepted(model_class: type[SoftQ]) -> None:
    """Values read from NumPy arrays or Optuna trials are numbers too."""
    extra = dict(trace_lambda=np.float32(0.5), sequence_length=np.int64(4)) if model_class is SoftQLambda else {}
    model = model_class(
        "MlpPolicy",
        "CartPole-v1",
        ent_coef=np.float32(0.1),
        gamma=np.float64(0.9),
        n_critics=np.int64(2),
        batch_size=np.int64(8),
        **extra,
    )
    assert model.n_critics == 2 and isinstance(model.n_critics, int)
    assert model_class("MlpPolicy", "CartPole-v1", target_entropy=np.float32(0.1)).target_entropy == pytest.approx(0.1)


@pytest.mark.parametrize("model_class", ALGOS)
def test_whole_floats_accepted_as_integers(model_class: type[SoftQ]) -> None:
    """As SB3's DQN accepts `learning_starts=20.0`; YAML files write `1e5` for a float."""
    extra = dict(sequence_length=4.0) if model_class is SoftQLambda else {}
    model = model_class(
        "MlpPolicy", "CartPole-v1", buffer_size=1e3, learning_starts=20.0, batch_size=16.0, target_update_interval=5e1,
        **extra,
    )  # fmt: skip
    for name, value in dict(buffer_size=1000, learning_starts=20, batch_size=16, target_update_interval=50).items():
        assert getattr(model, name) == value and isinstance(getattr(model, name), int), name
    if model_class is SoftQLambda:
        assert model.sequence_length == 4 and isinstance(model.sequence_length, int)
        assert model.replay_buffer.sequence_length == 4


@pytest.mark.parametrize("model_class", ALGOS)
def test_target_entropy_with_a_fixed_temperature_warns(model_class: type[SoftQ]) -> None:
    """Nothing is silently ignored: `target_entropy` only matters when the temperature is learned."""
    with pytest.warns(UserWarning, match="target_entropy"):
        model_class("MlpPolicy", "CartPole-v1", ent_coef=0.1, target_entropy=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model_class("MlpPolicy", "CartPole-v1", ent_coef="auto", target_entropy=0.3)
        model_class("MlpPolicy", "CartPole-v1", ent_coef=0.1)


@pytest.mark.parametrize("model_class", ALGOS)
def test_continuous_actions_refused(model_class: type[SoftQ]) -> None:
    with pytest.raises(ValueError, match="Discrete action space"):
        model_class("MlpPolicy", "Pendulum-v1")


@pytest.mark.parametrize("model_class", ALGOS)
def test_bad_reference_policies(model_class: type[SoftQ]) -> None:
    env = gym.make("CartPole-v1")
    with pytest.raises(TypeError, match="reference_policy"):
        model_class("MlpPolicy", env, reference_policy="uniform")
    with pytest.raises(TypeError, match="reference_policy"):
        model_class("MlpPolicy", env, reference_policy=DQN("MlpPolicy", env, buffer_size=10))


def uniform_log_probs(n_rows: int, n_actions: int = 2) -> th.Tensor:
    return th.full((n_rows, n_actions), -float(np.log(n_actions)))


class OtherProblemEnv(gym.Env):
    """CartPole's observation space with three actions, or another observation space."""

    def __init__(self, obs_dim: int = 4, n_actions: int = 3) -> None:
        cartpole = gym.make("CartPole-v1").observation_space
        self.observation_space = cartpole if obs_dim == 4 else spaces.Box(-1.0, 1.0, (obs_dim,), dtype=np.float32)
        self.action_space = spaces.Discrete(n_actions)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return np.zeros(self.observation_space.shape, dtype=np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        return np.zeros(self.observation_space.shape, dtype=np.float32), 0.0, False, True, {}


def ppo_for(env: gym.Env) -> PPO:
    return PPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[8]), seed=0)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize(
    "prior, match",
    [
        (lambda obs: uniform_log_probs(1), r"\[batch, 2\] = \[4, 2\]"),  # one row whatever the batch
        (lambda obs: uniform_log_probs(len(obs), 3), r"\[batch, 2\] = \[4, 2\]"),  # three actions
        (lambda obs: uniform_log_probs(len(obs))[:, :, None], r"\[4, 2\]"),
        (lambda obs: uniform_log_probs(len(obs))[0], r"\[4, 2\]"),
        (lambda obs: uniform_log_probs(len(obs)).numpy(), "tensor|ndarray"),
        (lambda obs: th.full((len(obs), 2), float("nan")), "finite"),
        (lambda obs: th.log(th.tensor([[1.0, 0.0]])).expand(len(obs), 2), "finite"),
        (lambda obs: th.full((len(obs), 2), float("inf")), "finite"),
        (lambda obs: th.zeros(len(obs), 2), "normalised"),
        (lambda obs: th.log_softmax(obs[:, [4, 5]], dim=1), "another observation space"),  # built for 6 features
        (lambda obs: th.log_softmax(th.nn.Linear(6, 2)(obs), dim=1), "another observation space"),
        (lambda obs: 1 / 0, "ZeroDivisionError"),
    ],
)
def test_reference_policy_checked_when_given(model_class: type[SoftQ], prior, match: str) -> None:
    """A state-dependent prior for another problem fails when it is given, naming `reference_policy` and what was
    expected, rather than deep inside SB3 or the buffer."""
    with pytest.raises(ValueError, match="reference_policy") as info:
        model_class("MlpPolicy", "CartPole-v1", reference_policy=prior)
    assert info.match(match)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("other", ["observation", "action"])
def test_sb3_reference_policy_for_other_spaces(model_class: type[SoftQ], other: str) -> None:
    env = OtherProblemEnv(obs_dim=6, n_actions=2) if other == "observation" else OtherProblemEnv(n_actions=3)
    prior = ppo_for(env)
    with pytest.raises(ValueError, match=f"reference_policy` was built for another {other} space"):
        model_class("MlpPolicy", "CartPole-v1", reference_policy=prior)
    with pytest.raises(ValueError, match=f"another {other} space"):
        model_class("MlpPolicy", "CartPole-v1", reference_policy=prior.policy)


@pytest.mark.parametrize("model_class", ALGOS)
def test_reference_policy_checked_at_load(model_class: type[SoftQ], tmp_path) -> None:
    model = model_class("MlpPolicy", "CartPole-v1", reference_policy=lambda obs: uniform_log_probs(len(obs)))
    model.save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=r"reference_policy.*normalised"):
        model_class.load(tmp_path / "model.zip", reference_policy=lambda obs: th.zeros(len(obs), 2))
    with pytest.raises(ValueError, match="another action space"):
        model_class.load(tmp_path / "model.zip", reference_policy=ppo_for(OtherProblemEnv(n_actions=3)))


@pytest.mark.parametrize("model_class", ALGOS)
def test_reference_policy_checked_on_every_observation_space(model_class: type[SoftQ]) -> None:
    """Dict and image observations are sampled from their spaces too; the env's space keeps its own generator."""
    seen = []

    def prior(obs) -> th.Tensor:
        seen.append(obs)
        rows = len(next(iter(obs.values()))) if isinstance(obs, dict) else len(obs)
        return uniform_log_probs(rows, n_actions)

    multi = SimpleMultiObsEnv(random_start=False)
    n_actions = multi.action_space.n
    kwargs = dict(policy_kwargs=dict(features_extractor_kwargs=dict(cnn_output_dim=16)), buffer_size=100)
    state = copy.deepcopy(multi.observation_space.np_random.bit_generator.state)
    model_class("MultiInputPolicy", multi, reference_policy=prior, **kwargs)
    assert multi.observation_space.np_random.bit_generator.state == state
    assert isinstance(seen[-1], dict) and set(seen[-1]) == set(multi.observation_space.spaces)
    assert all(len(value) == 4 and value.device.type == "cpu" for value in seen[-1].values())
    image = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True)
    n_actions = image.action_space.n
    model = model_class("CnnPolicy", image, reference_policy=prior, buffer_size=100)
    # As the model receives them: channel first (SB3 transposes image observations)
    assert seen[-1].shape == (4, *model.observation_space.shape) == (4, 1, 40, 40) and seen[-1].dtype == th.uint8


@pytest.mark.parametrize("trace", ["importance_sampling", "retrace"])
@pytest.mark.parametrize("without_probs", ["every step", "first steps of episodes"])
def test_off_policy_traces_need_behaviour_probabilities(trace: str, without_probs: str) -> None:
    """Steps added to the buffer without behaviour probabilities cannot be used by IS / Retrace; the first step of
    an episode never is (mu(a_{k+1}|s_{k+1}) enters only where the trace continues from step k)."""
    model = SoftQLambda("MlpPolicy", "CartPole-v1", trace=trace, learning_starts=0, buffer_size=100, batch_size=4)
    env = gym.make("CartPole-v1")
    obs, first_step = env.reset(seed=0)[0], True
    for _ in range(60):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        probs = None if without_probs == "every step" or first_step else np.array([0.5])
        model.replay_buffer.add(
            obs[None],
            next_obs[None],
            np.array([action]),
            np.array([reward]),
            np.array([terminated]),
            [{"TimeLimit.truncated": truncated and not terminated}],
            behaviour_probs=probs,
        )
        obs, first_step = (env.reset()[0], True) if terminated or truncated else (next_obs, False)
    model.set_logger(Logger(folder=None, output_formats=[]))
    if without_probs == "every step":
        with pytest.raises(ValueError, match="behaviour probabilities"):
            model.train(gradient_steps=1, batch_size=4)
    else:
        model.train(gradient_steps=20, batch_size=4)
        assert np.isfinite(model.logger.name_to_value["train/loss"])


NAN = float("nan")
INF = float("inf")


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize(
    "name, value",
    [
        ("learning_rate", "0.001"),
        ("learning_rate", None),
        ("learning_rate", INF),
        ("learning_rate", NAN),
        ("learning_rate", -1e-3),
        ("learning_rate", True),
        ("learning_rate", np.float32(NAN)),
        ("learning_rate", np.float64(-1.0)),
        ("gradient_steps", 1.5),
        ("gradient_steps", "1"),
        ("gradient_steps", None),
        ("gradient_steps", -5),
        ("gradient_steps", -2),
        ("gradient_steps", True),
        ("gradient_steps", NAN),
        ("gradient_steps", np.int64(-3)),
        ("gradient_steps", np.float32(0.5)),
        ("train_freq", 0),
        ("train_freq", -1),
        ("train_freq", (4, "weeks")),
        ("train_freq", "4"),
        ("train_freq", (0, "step")),
        ("train_freq", (-2, "episode")),
        ("train_freq", (1.5, "episode")),
        ("train_freq", ("4", "step")),
        ("train_freq", (4,)),
        ("train_freq", (4, "step", 1)),
        ("train_freq", None),
        ("train_freq", True),
        ("train_freq", 2.5),
        ("train_freq", np.int64(0)),
        ("tau", 0),
        ("tau", 0.0),
        ("tau", -0.5),
        ("tau", 1.5),
        ("tau", NAN),
        ("tau", "1"),
        ("tau", np.float32(0.0)),
        ("gamma", 1.5),
        ("gamma", -0.1),
        ("gamma", NAN),
        ("gamma", None),
        ("gamma", np.float64(1.01)),
        ("buffer_size", 0),
        ("buffer_size", -10),
        ("buffer_size", 1000.5),
        ("buffer_size", "1000"),
        ("buffer_size", None),
        ("buffer_size", INF),
        ("batch_size", 0),
        ("batch_size", -1),
        ("batch_size", 2.5),
        ("batch_size", None),
        ("batch_size", np.int32(0)),
        ("learning_starts", -1),
        ("learning_starts", 0.5),
        ("learning_starts", "100"),
        ("learning_starts", NAN),
        ("target_update_interval", 0),
        ("target_update_interval", -1),
        ("target_update_interval", None),
        ("target_update_interval", 10.5),
        ("max_grad_norm", 0),
        ("max_grad_norm", -1.0),
        ("max_grad_norm", NAN),
        ("max_grad_norm", "10"),
        ("max_grad_norm", None),
        ("exploration_fraction", -0.1),
        ("exploration_fraction", 1.5),
        ("exploration_initial_eps", 1.5),
        ("exploration_initial_eps", NAN),
        ("exploration_final_eps", -0.1),
        ("exploration_final_eps", None),
        ("stats_window_size", 0),
        ("stats_window_size", -1),
        ("stats_window_size", 2.5),
    ],
)
def test_bad_training_loop_arguments(model_class: type[SoftQ], name: str, value) -> None:
    """SB3's own arguments get the same clear error naming the parameter and the allowed values, at construction."""
    with pytest.raises(ValueError, match=f"`{name}` must be") as info:
        model_class("MlpPolicy", "CartPole-v1", **{name: value})
    assert info.match(r">|\[|\(|integer|number|tuple"), "the message says what is allowed"


@pytest.mark.parametrize("model_class", ALGOS)
def test_training_loop_arguments_accepted(model_class: type[SoftQ]) -> None:
    """Schedules, -1 / 0 gradient steps, train_freq pairs (lists from YAML too), NumPy numbers and whole floats."""
    kwargs = dict(learning_starts=10, buffer_size=200, batch_size=4)
    for extra in (
        dict(learning_rate=lambda progress: 1e-3 * progress, gradient_steps=-1, train_freq=(1, "episode")),
        dict(learning_rate=np.float32(1e-3), gradient_steps=np.int64(2), train_freq=(np.int64(2), "step"), tau=0.5),
        dict(learning_rate=1, gradient_steps=2.0, train_freq=4.0, tau=np.float64(1.0), max_grad_norm=INF),
        dict(learning_rate=0.0, gradient_steps=0, train_freq=[3, "step"]),
    ):
        model = model_class("MlpPolicy", "CartPole-v1", **kwargs, **extra)
        model.learn(40)
        assert isinstance(model.gradient_steps, int)
        assert isinstance(model.train_freq.frequency, int) and model.train_freq.frequency > 0
    assert model._n_updates == 0  # gradient_steps=0: collection only, as SB3 does
    assert model.train_freq.frequency == 3


@pytest.mark.parametrize("model_class", ALGOS)
def test_training_loop_arguments_checked_at_load(model_class: type[SoftQ], tmp_path) -> None:
    model = model_class("MlpPolicy", "CartPole-v1", train_freq=(2, "episode"), buffer_size=100)
    model.save(tmp_path / "model.zip")
    loaded = model_class.load(tmp_path / "model.zip")
    assert tuple(loaded.train_freq) == tuple(model.train_freq)
    for name, value in (("learning_rate", "0.1"), ("gradient_steps", -3), ("tau", 0.0), ("train_freq", (1, "day"))):
        with pytest.raises(ValueError, match=name):
            model_class.load(tmp_path / "model.zip", **{name: value})


@pytest.mark.parametrize(
    "n_envs, buffer_size, sequence_length, fits",
    [(1, 32, 64, False), (1, 32, 33, False), (1, 32, 32, True), (4, 100, 26, False), (4, 100, 25, True), (2, 64.0, 33, False)],
)
def test_sequence_length_must_fit_the_buffer(n_envs: int, buffer_size: int, sequence_length: int, fits: bool) -> None:
    env = make_vec_env("CartPole-v1", n_envs=n_envs)
    if fits:
        model = SoftQLambda("MlpPolicy", env, buffer_size=buffer_size, sequence_length=sequence_length)
        assert model.replay_buffer.buffer_size >= sequence_length
        return
    with pytest.raises(ValueError, match=r"`sequence_length` \(\d+\) must be <= `buffer_size`"):
        SoftQLambda("MlpPolicy", env, buffer_size=buffer_size, sequence_length=sequence_length)


class NonFiniteEnv(gym.Env):
    """Random observations and rewards, with NaN (or inf) rewards or observations over a range of steps."""

    def __init__(self, nan_rewards: range = range(0), nan_observations: range = range(0), value: float = NAN) -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
        self.action_space = spaces.Discrete(2)
        self.nan_rewards, self.nan_observations, self.value = nan_rewards, nan_observations, value
        self.t = 0

    def _obs(self) -> np.ndarray:
        obs = self.np_random.uniform(-1.0, 1.0, 3).astype(np.float32)
        if self.t in self.nan_observations:
            obs[1] = self.value
        return obs

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = self.value if self.t in self.nan_rewards else float(action) - 0.5
        return self._obs(), reward, self.t % 30 == 0, False, {}


NON_FINITE_FAST = dict(learning_starts=50, buffer_size=1_000, batch_size=32, policy_kwargs=dict(net_arch=[16]))


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("ent_coef", [0.1, "auto"])
@pytest.mark.parametrize("value", [NAN, INF])
def test_non_finite_rewards_stop_training(model_class: type[SoftQ], ent_coef: float | str, value: float) -> None:
    model = model_class("MlpPolicy", NonFiniteEnv(nan_rewards=range(60, 70), value=value), ent_coef=ent_coef, seed=0,
                        **NON_FINITE_FAST)  # fmt: skip
    with pytest.raises(NonFiniteError, match="Training met NaN") as info:
        model.learn(400)
    assert info.match("the replay buffer holds NaN or infinite rewards") and info.match("VecCheckNan")
    assert model.num_timesteps < 400


@pytest.mark.parametrize("model_class", ALGOS)
def test_non_finite_observations_stop_training(model_class: type[SoftQ]) -> None:
    """NaN observations stored during the warm-up (random actions) are found when training samples them."""
    model = model_class("MlpPolicy", NonFiniteEnv(nan_observations=range(10, 20)), ent_coef=0.1, seed=0, **NON_FINITE_FAST)
    with pytest.raises(NonFiniteError, match="Training met NaN") as info:
        model.learn(400)
    assert info.match("the replay buffer holds NaN or infinite observations") and info.match("VecCheckNan")


@pytest.mark.parametrize("model_class", ALGOS)
def test_never_samples_from_non_finite_probabilities(model_class: type[SoftQ]) -> None:
    """The inverse-CDF draw would map NaN probabilities to action 0: the policy raises instead, naming the cause."""
    model = model_class("MlpPolicy", NonFiniteEnv(nan_observations=range(80, 400)), ent_coef=0.1, seed=0, **NON_FINITE_FAST)
    with pytest.raises(NonFiniteError, match="observations"):
        model.learn(400)
    obs = th.rand(5, 3)
    nan_obs = obs.clone()
    nan_obs[2, 0] = NAN
    with pytest.raises(NonFiniteError, match="observations given to the policy are NaN"):
        model.policy.sample_behaviour(nan_obs)
    with pytest.raises(NonFiniteError, match="observations given"):
        model.predict(nan_obs.numpy(), deterministic=False)
    with th.no_grad():
        model.policy.q_nets[0].q_net[-1].bias[1] = NAN
    with pytest.raises(NonFiniteError, match="the Q-network, the temperature"):
        model.policy.sample_behaviour(obs)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("value", [NAN, INF])
def test_non_finite_temperature_stops_training(model_class: type[SoftQ], value: float) -> None:
    model = model_class("MlpPolicy", NonFiniteEnv(), ent_coef="auto", seed=0, **NON_FINITE_FAST)
    model.learn(100)
    model.train(gradient_steps=3, batch_size=8)
    with th.no_grad():
        model.policy.temperature.log_ent_coef.fill_(value)
    with pytest.raises(NonFiniteError, match=r"Training met NaN.*the temperature"):
        model.train(gradient_steps=3, batch_size=8)


@pytest.mark.parametrize("buffer_class", [ReplayBuffer, DictReplayBuffer, SequenceReplayBuffer, DictSequenceReplayBuffer])
def test_non_finite_causes_are_named(buffer_class: type[ReplayBuffer]) -> None:
    """Finite losses pass; otherwise the stored rewards, observations and the temperature are looked at."""
    box = spaces.Box(-1.0, 1.0, (3,), dtype=np.float32)
    is_dict = buffer_class in (DictReplayBuffer, DictSequenceReplayBuffer)
    observation_space = spaces.Dict({"image": spaces.Box(0, 255, (2, 2), dtype=np.uint8), "vector": box}) if is_dict else box
    buffer = buffer_class(10, observation_space, spaces.Discrete(2))
    finite = th.zeros(())
    check_training_finite({"loss": 1.0, "ent_coef_loss": None}, buffer, finite)
    with pytest.raises(NonFiniteError, match=r"loss = nan\).*the values diverged.*VecCheckNan"):
        check_training_finite({"loss": NAN, "ent_coef_loss": None}, buffer, finite)
    with pytest.raises(NonFiniteError, match=r"ent_coef_loss = inf\).*temperature"):
        check_training_finite({"loss": 1.0, "ent_coef_loss": INF}, buffer, th.tensor(NAN))
    buffer.rewards[3, 0] = INF
    assert non_finite_causes(buffer, finite) == ["rewards"]
    observations = buffer.observations["vector"] if is_dict else buffer.observations
    observations[5, 0, 1] = NAN
    assert non_finite_causes(buffer, th.tensor(-INF)) == ["rewards", "observations", "temperature"]
    with pytest.raises(NonFiniteError, match=r"holds NaN or infinite rewards.*holds NaN or infinite observations"):
        check_training_finite({"loss": INF}, buffer, finite)
    if hasattr(buffer, "behaviour_probs"):  # NaN marks steps stored without them; zero or inf is wrong
        assert "behaviour_probs" not in non_finite_causes(buffer, finite)
        buffer.behaviour_probs[2, 0] = 0.0
        assert non_finite_causes(buffer, finite)[-1] == "behaviour_probs"
    assert issubclass(NonFiniteError, RuntimeError)


def test_zero_behaviour_probabilities_stop_training() -> None:
    """Importance sampling divides by mu: steps stored with mu = 0 make the targets infinite, and the error says why."""
    model = SoftQLambda("MlpPolicy", "CartPole-v1", trace="importance_sampling", trace_lambda=1.0, learning_starts=0,
                        buffer_size=100, batch_size=16)  # fmt: skip
    env = gym.make("CartPole-v1")
    obs = env.reset(seed=0)[0]
    for _ in range(60):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        model.replay_buffer.add(
            obs[None],
            next_obs[None],
            np.array([action]),
            np.array([reward]),
            np.array([terminated]),
            [{"TimeLimit.truncated": truncated and not terminated}],
            behaviour_probs=np.array([0.5]),
        )
        obs = env.reset()[0] if terminated or truncated else next_obs
    with pytest.raises(ValueError, match="behaviour_probs"):  # add() refuses them before anything is written
        model.replay_buffer.add(obs[None], obs[None], np.array([0]), np.array([1.0]), np.array([False]), [{}], np.array([0.0]))
    model.replay_buffer.behaviour_probs[:60] = 0.0  # a buffer whose arrays were changed by hand (or loaded so)
    model.set_logger(Logger(folder=None, output_formats=[]))
    with pytest.raises(NonFiniteError, match="behaviour probabilities mu <= 0"):
        model.train(gradient_steps=2, batch_size=16)
