"""The Munchausen term in SoftQ and SoftQLambda (SPEC §3b): M-DQN's target, its off switch, arguments, save/load."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3.common.buffers import ReplayBufferSamples
from stable_baselines3.common.envs import SimpleMultiObsEnv
from stable_baselines3.common.logger import Logger

from sb3_softq import SoftQ, SoftQLambda

ALGOS = [SoftQ, SoftQLambda]
FAST = dict(
    learning_starts=100, buffer_size=2_000, batch_size=16, target_update_interval=50, policy_kwargs=dict(net_arch=[16])
)


def state_dependent_prior(obs: th.Tensor) -> th.Tensor:
    return th.log_softmax(th.stack([obs[:, 2], -obs[:, 2]], dim=1), dim=1)


def filled_model(model_class: type[SoftQ], seed: int = 0, **kwargs) -> SoftQ:
    """A model whose buffer holds 300 steps of CartPole-v1 (random actions, many episode ends), and whose target
    networks differ from the online ones."""
    model = model_class("MlpPolicy", "CartPole-v1", seed=seed, **{**FAST, "learning_starts": 300, **kwargs})
    model.learn(300)
    assert model._n_updates == 0
    with th.no_grad():
        for parameter in model.policy.q_nets_target.parameters():
            parameter.add_(0.3 * th.randn_like(parameter))
    return model


def mdqn_target(model: SoftQ, replay_data, tau: float, alpha: float, clip: float) -> th.Tensor:
    """
    M-DQN's target (Vieillard et al. 2020, eq. 2), written out in float64 from the target networks (minimum over
    critics), in its entropy form:

        y = r + alpha * clip(tau * log pi(a|s), l0, 0) + gamma * (1 - d) * sum_a' pi(a'|s') (q(s',a') - tau log pi(a'|s'))

    with pi = softmax(q / tau). Our soft value (KL form, uniform prior) is that sum minus tau * log|A|, so that constant
    is subtracted once per bootstrap.
    """
    with th.no_grad():
        q = th.stack([net(replay_data.observations) for net in model.policy.q_nets_target]).amin(0).double()
        q_next = th.stack([net(replay_data.next_observations) for net in model.policy.q_nets_target]).amin(0).double()
    log_pi = th.log_softmax(q / tau, dim=1)
    log_pi_next = th.log_softmax(q_next / tau, dim=1)
    actions = replay_data.actions.long().flatten()
    bonus = alpha * th.clamp(tau * log_pi[th.arange(len(actions)), actions], min=clip, max=0.0)
    entropy_form_value = (log_pi_next.exp() * (q_next - tau * log_pi_next)).sum(1)
    not_done = 1.0 - replay_data.dones.flatten().double()
    n_actions = q.shape[1]
    y = replay_data.rewards.flatten().double() + bonus + model.gamma * not_done * entropy_form_value
    return y - model.gamma * not_done * tau * math.log(n_actions)


@pytest.mark.parametrize("n_critics", [1, 2])
@pytest.mark.parametrize("alpha, clip, tau", [(0.9, -1.0, 0.3), (0.5, -0.2, 1.0), (1.0, -5.0, 0.05)])
def test_softq_target_is_mdqn(n_critics: int, alpha: float, clip: float, tau: float) -> None:
    model = filled_model(SoftQ, n_critics=n_critics, ent_coef=tau, munchausen_coef=alpha, munchausen_clip=clip)
    replay_data = model.replay_buffer.sample(64)
    batch = model._training_batch(replay_data, model.policy.ent_coef)
    expected = mdqn_target(model, replay_data, tau, alpha, clip)
    th.testing.assert_close(batch.targets.double(), expected, rtol=1e-5, atol=1e-5)
    # The term is there: the plain target differs, by at most alpha * |l0|, and never upwards
    plain = SoftQ("MlpPolicy", "CartPole-v1", n_critics=n_critics, ent_coef=tau, **FAST)
    plain.policy.load_state_dict(model.policy.state_dict())
    plain_targets = plain._training_batch(replay_data, plain.policy.ent_coef).targets
    difference = batch.targets - plain_targets
    assert (difference <= 1e-6).all() and (difference >= alpha * clip - 1e-5).all()
    assert difference.abs().max() > 1e-3


def softq_twin(model: SoftQLambda, **kwargs) -> SoftQ:
    """A SoftQ model with the same networks and temperature as ``model``."""
    twin = SoftQ("MlpPolicy", "CartPole-v1", **{**FAST, **kwargs})
    twin.policy.load_state_dict(model.policy.state_dict())
    return twin


@pytest.mark.parametrize("prior", [None, "vector", "callable"])
@pytest.mark.parametrize("n_critics", [1, 2])
def test_softq_lambda_at_lambda_0_is_softq_mdqn(prior: str | None, n_critics: int) -> None:
    """Every position of the windows (episode ends inside them included) gets SoftQ's M-DQN target."""
    reference = {None: None, "vector": [0.3, 0.7], "callable": state_dependent_prior}[prior]
    kwargs = dict(n_critics=n_critics, ent_coef=0.4, munchausen_coef=0.9, munchausen_clip=-0.5, reference_policy=reference)
    model = filled_model(SoftQLambda, trace_lambda=0.0, sequence_length=6, **kwargs)
    replay_data = model.replay_buffer.sample(32)
    assert (replay_data.continues[:, :-1] == 0).any(), "the windows should cross episode ends"
    targets = model._training_batch(replay_data, model.policy.ent_coef).targets

    def flat(values: th.Tensor) -> th.Tensor:
        return values.flatten(0, 1)

    samples = ReplayBufferSamples(
        observations=flat(replay_data.observations),
        actions=flat(replay_data.actions).reshape(-1, 1),
        next_observations=flat(replay_data.next_observations),
        dones=flat(replay_data.terminated).reshape(-1, 1).float(),
        rewards=flat(replay_data.rewards).reshape(-1, 1),
    )
    twin = softq_twin(model, **kwargs)
    expected = twin._training_batch(samples, twin.policy.ent_coef).targets
    valid = flat(replay_data.valid) > 0
    th.testing.assert_close(targets[valid], expected[valid], rtol=1e-5, atol=1e-5)
    if prior is None:
        th.testing.assert_close(expected.double(), mdqn_target(twin, samples, 0.4, 0.9, -0.5), rtol=1e-5, atol=1e-5)


def munchausen_window_loop(model: SoftQLambda, replay_data, tau: float) -> th.Tensor:
    """The window's rewards with their Munchausen terms, one position at a time."""
    rewards = replay_data.rewards.clone().double()
    batch_size, sequence_length = rewards.shape
    for b in range(batch_size):
        for k in range(sequence_length):
            obs = replay_data.observations[b, k][None]
            with th.no_grad():
                q = model.policy.target_q_values(obs)[0].double()
            log_pi = th.log_softmax(q / tau, dim=0)[int(replay_data.actions[b, k])]
            rewards[b, k] += model.munchausen_coef * max(tau * log_pi.item(), model.munchausen_clip)
    return rewards


def test_softq_lambda_window_bonus_equals_its_loop_twin() -> None:
    model = filled_model(SoftQLambda, n_critics=2, ent_coef=0.3, munchausen_coef=0.7, sequence_length=5)
    replay_data = model.replay_buffer.sample(8)
    with th.no_grad():
        next_observations = replay_data.next_observations.flatten(0, 1)
        rewards, next_q, next_log_prior = model._munchausen_window(replay_data, next_observations, model.policy.ent_coef)
    th.testing.assert_close(rewards.double(), munchausen_window_loop(model, replay_data, 0.3), rtol=1e-5, atol=1e-6)
    th.testing.assert_close(next_q, model.policy.target_q_values(next_observations).view(8, 5, -1))
    assert next_log_prior is None


@pytest.mark.parametrize("model_class", ALGOS)
def test_off_is_bit_for_bit_the_plain_algorithm(model_class: type[SoftQ]) -> None:
    """munchausen_coef=0 (the default, or given as 0 in any numeric type) trains exactly as the plain algorithm, with
    no extra target-network forward pass."""
    forward_rows: dict[str, list[int]] = {}
    parameters = {}
    for name, extra in (("default", {}), ("zero", dict(munchausen_coef=0, munchausen_clip=-3.0)),
                        ("numpy zero", dict(munchausen_coef=np.float32(0.0))), ("on", dict(munchausen_coef=0.5))):  # fmt: skip
        model = model_class("MlpPolicy", "CartPole-v1", seed=3, ent_coef="auto", **FAST, **extra)
        rows: list[int] = []
        model.policy.q_nets_target[0].register_forward_hook(lambda module, args, output, rows=rows: rows.append(len(output)))
        model.learn(400)
        forward_rows[name] = rows
        parameters[name] = [parameter.detach().clone() for parameter in model.policy.parameters()]
    for name in ("zero", "numpy zero"):
        assert all(th.equal(a, b) for a, b in zip(parameters["default"], parameters[name], strict=True))
        assert forward_rows[name] == forward_rows["default"]
    assert not all(th.equal(a, b) for a, b in zip(parameters["default"], parameters["on"], strict=True))
    n_forwards = len(forward_rows["default"])
    assert n_forwards > 0
    if model_class is SoftQ:  # one more forward pass (over s) per gradient step
        assert len(forward_rows["on"]) == 2 * n_forwards
    else:  # one forward pass over s and s' together
        assert len(forward_rows["on"]) == n_forwards
        assert forward_rows["on"] == [2 * rows for rows in forward_rows["default"]]


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(munchausen_coef=-0.1), ValueError, "munchausen_coef"),
        (dict(munchausen_coef=1.5), ValueError, "munchausen_coef"),
        (dict(munchausen_coef=float("nan")), ValueError, "munchausen_coef"),
        (dict(munchausen_coef=float("inf")), ValueError, "munchausen_coef"),
        (dict(munchausen_coef="0.9"), TypeError, "munchausen_coef"),
        (dict(munchausen_coef=True), TypeError, "munchausen_coef"),
        (dict(munchausen_coef=None), TypeError, "munchausen_coef"),
        (dict(munchausen_clip=0.0), ValueError, "munchausen_clip"),
        (dict(munchausen_clip=0.5), ValueError, "munchausen_clip"),
        (dict(munchausen_clip=float("nan")), ValueError, "munchausen_clip"),
        (dict(munchausen_clip=-float("inf")), ValueError, "munchausen_clip"),
        (dict(munchausen_clip="-1"), TypeError, "munchausen_clip"),
        (dict(munchausen_clip=False), TypeError, "munchausen_clip"),
        (dict(munchausen_clip=np.float64(1.0)), ValueError, "munchausen_clip"),
    ],
)
def test_bad_munchausen_arguments(model_class: type[SoftQ], kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        model_class("MlpPolicy", "CartPole-v1", **kwargs)


@pytest.mark.parametrize("model_class", ALGOS)
def test_numpy_munchausen_arguments_accepted(model_class: type[SoftQ]) -> None:
    model = model_class("MlpPolicy", "CartPole-v1", munchausen_coef=np.float32(0.9), munchausen_clip=np.int64(-2))
    assert model.munchausen_coef == pytest.approx(0.9) and isinstance(model.munchausen_coef, float)
    assert model.munchausen_clip == -2.0 and isinstance(model.munchausen_clip, float)


@pytest.mark.parametrize("model_class", ALGOS)
def test_save_load_keeps_both_and_load_overrides(model_class: type[SoftQ], tmp_path) -> None:
    model = model_class("MlpPolicy", "CartPole-v1", munchausen_coef=0.8, munchausen_clip=-0.5, seed=0, **FAST)
    model.learn(150)
    model.save(tmp_path / "model.zip")
    loaded = model_class.load(tmp_path / "model.zip")
    assert (loaded.munchausen_coef, loaded.munchausen_clip) == (0.8, -0.5)
    replay_data = model.replay_buffer.sample(8)
    loaded.replay_buffer = model.replay_buffer
    th.testing.assert_close(
        loaded._training_batch(replay_data, loaded.policy.ent_coef).targets,
        model._training_batch(replay_data, model.policy.ent_coef).targets,
    )
    overridden = model_class.load(tmp_path / "model.zip", munchausen_coef=0.0)
    assert (overridden.munchausen_coef, overridden.munchausen_clip) == (0.0, -0.5)
    overridden = model_class.load(tmp_path / "model.zip", custom_objects=dict(munchausen_clip=-2.0))
    assert (overridden.munchausen_coef, overridden.munchausen_clip) == (0.8, -2.0)
    with pytest.raises(ValueError, match="munchausen_coef"):
        model_class.load(tmp_path / "model.zip", munchausen_coef=2.0)
    # A model saved without the term loads with it off
    plain = model_class("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    plain.save(tmp_path / "plain.zip")
    assert model_class.load(tmp_path / "plain.zip").munchausen_coef == 0.0


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("ent_coef", [0.1, "auto"])
def test_learn_with_munchausen(model_class: type[SoftQ], ent_coef: float | str) -> None:
    env = gym.make("CartPole-v1")
    model = model_class("MlpPolicy", env, munchausen_coef=0.9, ent_coef=ent_coef, n_critics=2, seed=0, **FAST)
    model.set_logger(Logger(folder=None, output_formats=[]))
    before = [parameter.detach().clone() for parameter in model.policy.q_nets.parameters()]
    model.learn(400)
    assert model._n_updates > 0
    assert np.isfinite(model.logger.name_to_value["train/loss"])
    assert all(not th.equal(old, new) for old, new in zip(before, model.policy.q_nets.parameters(), strict=True))
    if ent_coef == "auto":
        assert model.policy.ent_coef.item() != pytest.approx(1.0)


@pytest.mark.parametrize("model_class", ALGOS)
def test_munchausen_with_dict_observations_and_a_state_dependent_prior(model_class: type[SoftQ]) -> None:
    """Dict observations go through the one forward pass over s and s' together; the prior is evaluated at both."""
    env = SimpleMultiObsEnv(random_start=False)
    n_actions = env.action_space.n
    prior_rows: list[int] = []

    def prior(obs: dict[str, th.Tensor]) -> th.Tensor:
        rows = len(obs["vec"])
        prior_rows.append(rows)
        return th.log_softmax(obs["vec"][:, :n_actions] * 0.1, dim=1)

    kwargs = {**FAST, "policy_kwargs": dict(net_arch=[16], features_extractor_kwargs=dict(cnn_output_dim=16))}
    model = model_class("MultiInputPolicy", env, munchausen_coef=0.9, ent_coef=0.2, reference_policy=prior, seed=0, **kwargs)
    model.learn(250)
    assert model._n_updates > 0
    replay_data = model.replay_buffer.sample(4)
    batch = model._training_batch(replay_data, model.policy.ent_coef)
    assert th.isfinite(batch.targets).all()
    if model_class is SoftQLambda:
        assert 2 * 4 * model.sequence_length in prior_rows  # s_k and s_{k+1} of every position in one call
