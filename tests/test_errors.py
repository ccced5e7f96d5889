"""Bad input gets a clear error naming the parameter and what is allowed; nothing is silently ignored."""

import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer
from stable_baselines3.common.logger import Logger

from sb3_softq import SoftQ, SoftQLambda

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
    obs = env.reset(seed=0)[0]
    not_normalised = model_class("MlpPolicy", env, reference_policy=lambda obs: th.zeros(len(obs), 2))
    with pytest.raises(ValueError, match="normalised"):
        not_normalised.predict(obs, deterministic=False)
    not_finite = model_class("MlpPolicy", env, reference_policy=lambda obs: th.full((len(obs), 2), float("nan")))
    with pytest.raises(ValueError, match="normalised"):
        not_finite.predict(obs, deterministic=False)
    wrong_shape = model_class("MlpPolicy", env, reference_policy=lambda obs: th.zeros(len(obs), 3))
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        wrong_shape.predict(obs, deterministic=False)


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
