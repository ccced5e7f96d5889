import csv

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import CheckpointCallback, EvalCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, SimpleMultiObsEnv
from stable_baselines3.common.logger import KVWriter, Logger, configure
from stable_baselines3.common.vec_env import VecNormalize

from sb3_softq import SoftQ, SoftQLambda

ALGOS = [SoftQ, SoftQLambda]
FAST = dict(
    learning_starts=100, buffer_size=2_000, batch_size=16, target_update_interval=50, policy_kwargs=dict(net_arch=[16])
)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("n_envs", [1, 4])
@pytest.mark.parametrize("n_critics", [1, 2])
@pytest.mark.parametrize("ent_coef", [0.1, "auto", "auto_0.5"])
def test_mlp(model_class: type[SoftQ], n_envs: int, n_critics: int, ent_coef: float | str) -> None:
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
    model = model_class("MlpPolicy", env, n_critics=n_critics, ent_coef=ent_coef, seed=0, **FAST)
    before = [parameter.detach().clone() for parameter in model.policy.q_nets.parameters()]
    model.learn(400)
    assert len(model.policy.q_nets) == n_critics
    assert model._n_updates > 0
    assert all(not th.equal(old, new) for old, new in zip(before, model.policy.q_nets.parameters(), strict=True))
    if isinstance(ent_coef, str):
        # The temperature was learned
        assert model.policy.ent_coef.item() != pytest.approx(0.5 if ent_coef == "auto_0.5" else 1.0)
    else:
        assert model.policy.ent_coef.item() == pytest.approx(ent_coef)


@pytest.mark.parametrize("model_class", ALGOS)
def test_cnn(model_class: type[SoftQ]) -> None:
    env = FakeImageEnv(screen_height=40, screen_width=40, n_channels=1, discrete=True)
    kwargs = {**FAST, "buffer_size": 300, "policy_kwargs": dict(features_extractor_kwargs=dict(features_dim=32))}
    model = model_class("CnnPolicy", env, seed=0, **kwargs)
    model.learn(150)
    assert model._n_updates > 0
    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize("model_class", ALGOS)
def test_multi_input(model_class: type[SoftQ]) -> None:
    env = SimpleMultiObsEnv(random_start=False)
    kwargs = {**FAST, "policy_kwargs": dict(net_arch=[16], features_extractor_kwargs=dict(cnn_output_dim=16))}
    model = model_class("MultiInputPolicy", env, seed=0, **kwargs)
    model.learn(250)
    obs, _ = env.reset()
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(int(action))


@pytest.mark.parametrize("model_class", ALGOS)
def test_vec_normalize(model_class: type[SoftQ]) -> None:
    """The buffer stores raw observations and rewards; samples are normalised with the env's current statistics."""
    env = VecNormalize(make_vec_env("CartPole-v1", n_envs=2, seed=0), gamma=0.99)
    model = model_class("MlpPolicy", env, seed=0, **FAST).learn(300)
    assert model._n_updates > 0
    np.random.seed(0)
    raw = model.replay_buffer.sample(8)
    np.random.seed(0)
    normalised = model.replay_buffer.sample(8, env=model.get_vec_normalize_env())
    np.testing.assert_allclose(normalised.observations.numpy(), env.normalize_obs(raw.observations.numpy()), rtol=1e-5)
    np.testing.assert_allclose(normalised.rewards.numpy(), env.normalize_reward(raw.rewards.numpy()), rtol=1e-5)
    assert not np.allclose(normalised.observations.numpy(), raw.observations.numpy())


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("prior", ["uniform", "vector", "callable", "sb3_policy"])
def test_reference_policies(model_class: type[SoftQ], prior: str) -> None:
    env = gym.make("CartPole-v1")
    calls = []

    def state_dependent(obs: th.Tensor) -> th.Tensor:
        calls.append(len(obs))
        logits = th.stack([obs[:, 2], -obs[:, 2]], dim=1)  # lean towards the side the pole falls to
        return th.log_softmax(logits, dim=1)

    reference = {
        "uniform": None,
        "vector": [0.3, 0.7],
        "callable": state_dependent,
        "sb3_policy": PPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[8]), seed=0),
    }[prior]
    model = model_class("MlpPolicy", env, reference_policy=reference, seed=0, **FAST)
    if prior == "callable":
        assert calls == [4], "the prior is checked once, on a few observations, when it is given"
        calls.clear()
    model.learn(300)
    if prior == "callable":
        assert calls, "the state-dependent prior was never used"
    obs = th.as_tensor(env.reset(seed=1)[0][None])
    if prior == "uniform":
        expected_log_prior = th.full((1, 2), -np.log(2.0))
    elif prior == "vector":
        expected_log_prior = th.log(th.tensor([[0.3, 0.7]]))
    elif prior == "callable":
        expected_log_prior = state_dependent(obs)
    else:
        expected_log_prior = reference.policy.get_distribution(obs).distribution.logits.detach()
    log_prior = model.policy.log_prior(obs)
    th.testing.assert_close(th.full((1, 2), -np.log(2.0)) if log_prior is None else log_prior.expand(1, 2), expected_log_prior)
    # pi_B = softmax(Q / tau + log prior)
    with th.no_grad():
        logits = model.policy.q_values(obs) / model.policy.ent_coef + expected_log_prior
        th.testing.assert_close(model.policy.action_log_probs(obs), th.log_softmax(logits, dim=1))


@pytest.mark.parametrize("model_class", ALGOS)
def test_state_dependent_priors_are_copies_in_the_q_values_dtype(model_class: type[SoftQ]) -> None:
    """An SB3 prior is a frozen copy (the user's policy is not switched to evaluation mode, and changing it does
    not change the prior); a callable's log-probabilities are cast to the Q-values' dtype."""
    env = gym.make("CartPole-v1")
    ppo = PPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[8]), seed=0)
    ppo.policy.set_training_mode(True)
    model = model_class("MlpPolicy", env, reference_policy=ppo, seed=0, **FAST)
    assert ppo.policy.training
    obs = th.as_tensor(np.stack([env.reset(seed=seed)[0] for seed in range(4)]))
    log_prior = model.policy.log_prior(obs)
    with th.no_grad():
        for parameter in ppo.policy.parameters():
            parameter.add_(1.0)
    th.testing.assert_close(model.policy.log_prior(obs), log_prior)

    def float64_prior(obs: th.Tensor) -> th.Tensor:
        return th.log_softmax(th.stack([obs[:, 2], -obs[:, 2]], dim=1).double(), dim=1)

    model = model_class("MlpPolicy", env, reference_policy=float64_prior, seed=0, **FAST)
    assert model.policy.log_prior(obs).dtype == th.float32
    model.learn(150)
    assert model.policy.action_log_probs(obs).dtype == th.float32


@pytest.mark.parametrize("model_class", ALGOS)
def test_callbacks_progress_bar_and_logged_keys(model_class: type[SoftQ], tmp_path) -> None:
    env = make_vec_env("CartPole-v1", n_envs=1, seed=0)
    model = model_class("MlpPolicy", env, seed=0, **FAST)
    model.set_logger(configure(str(tmp_path / "log"), ["csv", "tensorboard"]))
    eval_callback = EvalCallback(make_vec_env("CartPole-v1", n_envs=1), eval_freq=200, n_eval_episodes=2)
    checkpoint = CheckpointCallback(save_freq=250, save_path=str(tmp_path / "ckpt"))
    model.learn(600, callback=[eval_callback, checkpoint], progress_bar=True, log_interval=1)
    assert np.isfinite(eval_callback.last_mean_reward)  # -inf until the first evaluation
    assert len(list((tmp_path / "ckpt").glob("*.zip"))) == 2  # after 250 and 500 steps
    with open(tmp_path / "log" / "progress.csv") as handle:
        keys = set(next(csv.reader(handle)))
    expected = {"train/loss", "train/ent_coef", "train/entropy", "train/kl_to_reference", "train/q_mean", "train/n_updates"}
    if model_class is SoftQLambda:
        expected |= {"train/mean_trace_coef", "train/effective_trace_length", "train/cut_fraction"}
    assert expected <= keys, expected - keys
    assert list((tmp_path / "log").glob("events.out.tfevents*"))


class CapturedKeys(KVWriter):
    """A logger output that keeps the keys of every dump."""

    def __init__(self) -> None:
        self.dumps: list[set[str]] = []

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        self.dumps.append(set(key_values))


@pytest.mark.parametrize("model_class", ALGOS)
def test_policy_statistics_are_logged_once_per_training(model_class: type[SoftQ]) -> None:
    """Like `train/loss`, the statistics of a training batch appear in the first dump after `train()`, not again."""
    model = model_class("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    captured = CapturedKeys()
    model.set_logger(Logger(folder=None, output_formats=[captured]))
    model.learn(400, log_interval=1)
    assert any("train/entropy" in keys for keys in captured.dumps)
    for keys in captured.dumps:
        assert ("train/entropy" in keys) == ("train/loss" in keys) == ("train/q_mean" in keys)
    captured.dumps.clear()
    model.learn(100, log_interval=1)  # the counter restarts: no gradient step before `learning_starts`
    # Only the first dump holds what the last training of the previous call recorded after its last dump
    assert len(captured.dumps) > 1 and ("train/entropy" in captured.dumps[0]) == ("train/loss" in captured.dumps[0])
    assert not any(key.startswith("train/") for keys in captured.dumps[1:] for key in keys)
    model.train(gradient_steps=0, batch_size=16)  # nothing to do, as when `learn()` skips it


@pytest.mark.parametrize("model_class", ALGOS)
def test_exploration_mixing(model_class: type[SoftQ]) -> None:
    """epsilon-mixing on top of Boltzmann sampling; behaviour probabilities include it."""
    kwargs = dict(exploration_initial_eps=1.0, exploration_final_eps=0.5, exploration_fraction=0.5, seed=0, **FAST)
    model = model_class("MlpPolicy", "CartPole-v1", **kwargs)
    model.learn(300)
    assert model.exploration_rate == pytest.approx(0.5)  # annealed over the first half of the 300 steps
    # mu = (1 - eps) pi_B + eps / |A|, for the sampled actions and their recorded probabilities; a low temperature makes
    # pi_B nearly greedy, so that mu (about 0.75 / 0.25) is far from pi_B (about 1 / 0)
    model = model_class("MlpPolicy", "CartPole-v1", ent_coef=1e-3, **kwargs)
    obs = th.as_tensor(np.random.default_rng(0).normal(size=(4000, 4)).astype(np.float32))
    actions, probs = model.policy.sample_behaviour(obs, exploration_rate=0.5)
    with th.no_grad():
        policy_probs = model.policy.action_log_probs(obs).exp().numpy()
    mixed = 0.5 * policy_probs + 0.25
    np.testing.assert_allclose(probs, mixed[np.arange(len(actions)), actions], atol=1e-4)
    greedy = policy_probs.argmax(axis=1)
    assert abs(np.mean(actions == greedy) - np.mean(mixed.max(axis=1))) < 0.03


def test_sampling_never_draws_an_action_of_probability_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    """Float32 probabilities may sum to just below 1: a uniform draw above that sum must not fall on a last action
    of probability 0 (its recorded mu = 0 would make an importance ratio infinite)."""
    model = SoftQ("MlpPolicy", "CartPole-v1", **FAST)
    probs = th.tensor([[0.6, 0.4 - 3e-7, 0.0], [0.0, 0.5, 0.5]], dtype=th.float32)
    monkeypatch.setattr(model.policy, "behaviour_probs", lambda obs, exploration_rate=0.0: probs)
    for draw in (0.0, 0.5, 1.0 - 1e-9):
        monkeypatch.setattr(np.random, "random", lambda size, draw=draw: np.full(size, draw))
        actions, action_probs = model.policy.sample_behaviour(th.zeros(2, 4))
        assert np.all(action_probs > 0), (draw, actions)
    assert list(actions) == [1, 2]


def test_predict_deterministic_is_argmax_and_stochastic_samples_boltzmann() -> None:
    model = SoftQ("MlpPolicy", "CartPole-v1", ent_coef=1.0, seed=0, **FAST)
    obs = np.random.default_rng(0).normal(size=(512, 4)).astype(np.float32)
    obs_tensor = th.as_tensor(obs)
    with th.no_grad():
        q_values = model.policy.q_values(obs_tensor)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, q_values.argmax(dim=1).numpy())
    # Stochastic: frequencies match pi_B on one state; the prior makes pi_B far from uniform (about 0.2 / 0.8)
    model = SoftQ("MlpPolicy", "CartPole-v1", ent_coef=1.0, reference_policy=[0.2, 0.8], seed=0, **FAST)
    single = np.repeat(obs[:1], 4000, axis=0)
    sampled, _ = model.predict(single, deterministic=False)
    with th.no_grad():
        probs = model.policy.action_log_probs(th.as_tensor(obs[:1])).exp()[0].numpy()
    assert abs(probs[1] - 0.5) > 0.2
    assert abs(np.mean(sampled == 1) - probs[1]) < 0.03


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("target_entropy", [0.0, float(np.log(2))])
def test_temperature_update_follows_the_entropy_gap(model_class: type[SoftQ], target_entropy: float) -> None:
    """
    One temperature step is Adam's first step on the gradient H(pi_B) - target of the loss log(tau) (H - target):
    tau falls when pi_B is more random than the target (0 nats) and rises when it is less (log 2, the maximum).
    """
    model = model_class("MlpPolicy", "CartPole-v1", ent_coef="auto", target_entropy=target_entropy, seed=0, **FAST)
    model.learn(200)
    model.policy.temperature.reset(model.policy.temperature.spec)  # a fresh Adam: its first step is lr * sign(gradient)
    log_ent_coef = model.policy.temperature.log_ent_coef.item()
    model.train(gradient_steps=1, batch_size=model.batch_size)
    # CartPole has 2 actions: H(pi_B) lies in (0, log 2) unless pi_B is one-hot or uniform, so the gap H - target is
    # positive for the target 0 and negative for the target log 2
    expected_sign = 1.0 if target_entropy == 0.0 else -1.0
    step = model.policy.temperature.log_ent_coef.item() - log_ent_coef
    assert step == pytest.approx(-model.learning_rate * expected_sign, rel=1e-4)


@pytest.mark.parametrize("model_class", ALGOS)
def test_adam_runs_fused_unless_the_user_chooses(model_class: type[SoftQ]) -> None:
    """Adam (Q-networks and temperature) runs PyTorch's fused step by default; the user's choice is kept."""
    model = model_class("MlpPolicy", "CartPole-v1", ent_coef="auto", seed=0, **FAST)
    assert model.policy.optimizer.defaults["fused"] is True
    assert model.ent_coef_optimizer is not None and model.ent_coef_optimizer.defaults["fused"] is True
    model.learn(200)  # the fused step runs

    kwargs = {**FAST, "policy_kwargs": dict(net_arch=[16], optimizer_kwargs=dict(foreach=True, eps=1e-5))}
    model = model_class("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
    assert model.policy.optimizer.defaults["fused"] is None
    assert model.policy.optimizer.defaults["foreach"] is True
    assert model.policy.optimizer.defaults["eps"] == 1e-5
    assert kwargs["policy_kwargs"]["optimizer_kwargs"] == dict(foreach=True, eps=1e-5)  # not modified

    kwargs = {**FAST, "policy_kwargs": dict(net_arch=[16], optimizer_class=th.optim.RMSprop)}
    model = model_class("MlpPolicy", "CartPole-v1", seed=0, **kwargs)
    assert isinstance(model.policy.optimizer, th.optim.RMSprop)
    assert not model.policy.optimizer.defaults.get("fused")
