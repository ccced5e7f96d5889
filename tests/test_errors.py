"""Bad input gets a clear error naming the parameter and what is allowed; nothing is silently ignored."""

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
        (dict(n_steps=3), "SoftQLambda"),
        (dict(replay_buffer_class=NStepReplayBuffer), "n_steps|SequenceReplayBuffer"),
        (dict(exploration_initial_eps=1.5), "exploration_initial_eps"),
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
def test_continuous_actions_refused(model_class: type[SoftQ]) -> None:
    with pytest.raises(AssertionError, match="Discrete"):
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
    wrong_shape = model_class("MlpPolicy", env, reference_policy=lambda obs: th.zeros(len(obs), 3))
    with pytest.raises(ValueError, match=r"\[batch, 2\]"):
        wrong_shape.predict(obs, deterministic=False)


@pytest.mark.parametrize("trace", ["importance_sampling", "retrace"])
def test_off_policy_traces_need_behaviour_probabilities(trace: str) -> None:
    """Steps added to the buffer without behaviour probabilities cannot be used by IS / Retrace."""
    model = SoftQLambda("MlpPolicy", "CartPole-v1", trace=trace, learning_starts=0, buffer_size=100, batch_size=4)
    env = gym.make("CartPole-v1")
    obs = env.reset(seed=0)[0]
    for _ in range(20):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        model.replay_buffer.add(
            obs[None], next_obs[None], np.array([action]), np.array([reward]), np.array([terminated]), [{}]
        )
        obs = env.reset()[0] if terminated or truncated else next_obs
    model.set_logger(Logger(folder=None, output_formats=[]))
    with pytest.raises(ValueError, match="behaviour probabilities"):
        model.train(gradient_steps=1, batch_size=4)
