import copy
import pickle
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnv, SimpleMultiObsEnv

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.common.buffers import DictSequenceReplayBuffer, SequenceReplayBuffer

ALGOS = [SoftQ, SoftQLambda]
FAST = dict(learning_starts=50, buffer_size=1_000, batch_size=16, target_update_interval=50, policy_kwargs=dict(net_arch=[16]))
DEVICES = ["cpu", *(["cuda"] if th.cuda.is_available() else [])]


def optimizer_tensors(optimizer: th.optim.Optimizer) -> list[th.Tensor]:
    return [value for state in optimizer.state_dict()["state"].values() for value in state.values() if th.is_tensor(value)]


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("ent_coef", [0.2, "auto"])
@pytest.mark.parametrize("device", DEVICES)
def test_save_load(tmp_path, model_class: type[SoftQ], ent_coef: float | str, device: str) -> None:
    env = IdentityEnv(5)
    model = model_class("MlpPolicy", env, ent_coef=ent_coef, n_critics=2, seed=0, device=device, **FAST)
    model.learn(300)
    observations = np.arange(5)
    actions, _ = model.predict(observations, deterministic=True)
    params = {name: value.detach().clone() for name, value in model.policy.state_dict().items()}
    optim_state = [value.clone() for value in optimizer_tensors(model.policy.optimizer)]

    model.save(tmp_path / "model.zip")
    del model
    for load_device in DEVICES:
        loaded = model_class.load(tmp_path / "model.zip", env=env, device=load_device)
        np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
        for name, value in loaded.policy.state_dict().items():
            th.testing.assert_close(value.cpu(), params[name].cpu(), msg=name)
        for value, expected in zip(optimizer_tensors(loaded.policy.optimizer), optim_state, strict=True):
            th.testing.assert_close(value.cpu(), expected.cpu())
        assert loaded.ent_coef == ent_coef
        assert loaded.n_critics == 2
        if ent_coef == "auto":
            assert loaded.ent_coef_optimizer is not None
            assert optimizer_tensors(loaded.ent_coef_optimizer), "the temperature optimizer state was not restored"
            assert loaded.policy.temperature.log_ent_coef.requires_grad
            assert loaded.ent_coef_optimizer.param_groups[0]["params"][0] is loaded.policy.temperature.log_ent_coef
        # Training continues, temperature included
        before = loaded.policy.ent_coef.item()
        loaded.learn(200, reset_num_timesteps=False)
        assert (loaded.policy.ent_coef.item() != before) == (ent_coef == "auto")


@pytest.mark.parametrize("model_class", ALGOS)
def test_policy_save_load(tmp_path, model_class: type[SoftQ]) -> None:
    model = model_class("MlpPolicy", IdentityEnv(4), ent_coef=0.3, reference_policy=[0.1, 0.2, 0.3, 0.4], seed=0, **FAST)
    model.learn(100)
    model.policy.save(tmp_path / "policy.pth")
    policy = type(model.policy).load(tmp_path / "policy.pth")
    obs = th.arange(4)
    th.testing.assert_close(policy.action_log_probs(obs), model.policy.action_log_probs(obs))


@pytest.mark.parametrize("model_class", ALGOS)
def test_replay_buffer_round_trip(tmp_path, model_class: type[SoftQ]) -> None:
    model = model_class("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    model.learn(300)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    old_buffer = model.replay_buffer
    model.load_replay_buffer(tmp_path / "buffer.pkl", truncate_last_traj=False)
    assert model.replay_buffer is not old_buffer
    assert model.replay_buffer.size() == old_buffer.size()
    np.random.seed(3)
    new_samples = model.replay_buffer.sample(8)
    np.random.seed(3)
    old_samples = old_buffer.sample(8)
    for new, old in zip(new_samples, old_samples, strict=True):
        if th.is_tensor(new):
            th.testing.assert_close(new, old, equal_nan=True)
    model.learn(100, reset_num_timesteps=False)


@pytest.mark.parametrize("model_class", ALGOS)
def test_state_dependent_prior_must_be_passed_again(tmp_path, model_class: type[SoftQ]) -> None:
    def prior(obs: th.Tensor) -> th.Tensor:
        return th.log_softmax(th.stack([obs[:, 0], -obs[:, 0]], dim=1), dim=1)

    model = model_class("MlpPolicy", "CartPole-v1", reference_policy=prior, seed=0, **FAST)
    model.learn(100)
    obs = gym.make("CartPole-v1").reset(seed=0)[0]
    expected = model.predict(obs, deterministic=True)[0]
    model.save(tmp_path / "model.zip")

    with pytest.warns(UserWarning, match="reference_policy"):
        without_prior = model_class.load(tmp_path / "model.zip")
    with pytest.raises(ValueError, match="reference_policy=prior"):
        without_prior.predict(obs, deterministic=True)

    with_prior = model_class.load(tmp_path / "model.zip", reference_policy=prior)
    assert with_prior.predict(obs, deterministic=True)[0] == expected
    with_prior = model_class.load(tmp_path / "model.zip", custom_objects=dict(reference_policy=prior))
    assert with_prior.predict(obs, deterministic=True)[0] == expected

    # Given another prior (a vector, or None for uniform), the model uses it from then on, also once saved again
    for other, expected_probs in (([0.3, 0.7], [0.3, 0.7]), (None, None)):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            loaded = model_class.load(tmp_path / "model.zip", reference_policy=other)
            loaded.predict(obs, deterministic=True)
            loaded.save(tmp_path / "again.zip")
            again = model_class.load(tmp_path / "again.zip")
        log_prior = again.policy.log_prior(th.zeros(1, 4))
        assert (None if log_prior is None else log_prior.exp().tolist()) == pytest.approx(expected_probs)


@pytest.mark.parametrize("model_class", ALGOS)
def test_load_keeps_or_replaces_the_fixed_prior(tmp_path, model_class: type[SoftQ]) -> None:
    """A vector prior is saved with the model, and `load(reference_policy=...)` replaces it (None: uniform)."""
    model = model_class("MlpPolicy", "CartPole-v1", reference_policy=[0.3, 0.7], seed=0, **FAST)
    model.learn(100)
    model.save(tmp_path / "model.zip")

    def prior_probs(loaded: SoftQ) -> list[float] | None:
        log_probs = loaded.policy.log_prior(th.zeros(1, 4))
        return None if log_probs is None else log_probs.exp().tolist()

    assert prior_probs(model_class.load(tmp_path / "model.zip")) == pytest.approx([0.3, 0.7])
    # An array or tensor prior is saved as the list of its probabilities (JSON, not a pickled object)
    for probs in (np.array([0.3, 0.7]), th.tensor([0.3, 0.7])):
        vector = model_class("MlpPolicy", "CartPole-v1", reference_policy=probs, **FAST)
        assert vector.reference_policy == pytest.approx([0.3, 0.7]) and isinstance(vector.reference_policy, list)
    assert prior_probs(model_class.load(tmp_path / "model.zip", reference_policy=[0.9, 0.1])) == pytest.approx([0.9, 0.1])
    assert prior_probs(model_class.load(tmp_path / "model.zip", reference_policy=None)) is None
    # ... and the other way round: a model trained with the uniform prior, loaded with a vector
    uniform = model_class("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    uniform.save(tmp_path / "uniform.zip")
    assert prior_probs(model_class.load(tmp_path / "uniform.zip", reference_policy=[0.9, 0.1])) == pytest.approx([0.9, 0.1])


@pytest.mark.parametrize("model_class", ALGOS)
def test_load_accepts_the_policy_kwargs_it_was_built_with(tmp_path, model_class: type[SoftQ]) -> None:
    """SB3 compares `load(policy_kwargs=...)` with the saved ones: those are the user's, not the algorithm's additions."""
    policy_kwargs = dict(net_arch=[32])
    model = model_class("MlpPolicy", "CartPole-v1", n_critics=2, seed=0, **{**FAST, "policy_kwargs": policy_kwargs})
    assert model.policy_kwargs == policy_kwargs
    model.save(tmp_path / "model.zip")
    loaded = model_class.load(tmp_path / "model.zip", policy_kwargs=dict(net_arch=[32]))
    assert loaded.policy.n_critics == 2
    assert loaded.policy.net_arch == [32]
    with pytest.raises(ValueError, match="policy kwargs"):
        model_class.load(tmp_path / "model.zip", policy_kwargs=dict(net_arch=[64]))


@pytest.mark.parametrize("model_class", ALGOS)
def test_policy_gets_the_algorithm_arguments_beside_the_user_kwargs(model_class: type[SoftQ]) -> None:
    """The policy is built with the algorithm's arguments passed explicitly; the user's dict is never rewritten."""
    received: list[dict] = []
    policy_class = model_class.policy_aliases["MlpPolicy"]

    class RecordingPolicy(policy_class):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs) -> None:
            received.append(dict(kwargs))
            super().__init__(*args, **kwargs)

    policy_kwargs = dict(net_arch=[16])
    model = model_class(
        RecordingPolicy,
        "CartPole-v1",
        n_critics=2,
        ent_coef=0.3,
        reference_policy=[0.4, 0.6],
        **{**FAST, "policy_kwargs": policy_kwargs},
    )
    assert received == [dict(net_arch=[16], n_critics=2, ent_coef=0.3, reference_probs=[0.4, 0.6])]
    assert model.policy_kwargs is policy_kwargs and policy_kwargs == dict(net_arch=[16])


@pytest.mark.parametrize("model_class", ALGOS)
def test_replay_buffer_built_by_make_replay_buffer(model_class: type[SoftQ]) -> None:
    """`_make_replay_buffer` is the one place a subclass changes how the buffer is built (at construction and load)."""

    class Recording(model_class):  # type: ignore[misc, valid-type]
        built = 0

        def _make_replay_buffer(self, **kwargs):
            type(self).built += 1
            return super()._make_replay_buffer(**kwargs)

    model = Recording("MlpPolicy", "CartPole-v1", **FAST)
    assert Recording.built == 1 and model.replay_buffer is not None and model.replay_buffer.buffer_size == FAST["buffer_size"]
    expected = SequenceReplayBuffer if model_class is SoftQLambda else ReplayBuffer
    assert type(model.replay_buffer) is expected
    dict_model = model_class("MultiInputPolicy", SimpleMultiObsEnv(), **FAST)
    assert type(dict_model.replay_buffer) is (DictSequenceReplayBuffer if model_class is SoftQLambda else DictReplayBuffer)


@pytest.mark.parametrize("model_class", ALGOS)
def test_deterministic_training(model_class: type[SoftQ]) -> None:
    """Same seed -> same actions, same parameters."""
    results = []
    for _ in range(2):
        model = model_class("MlpPolicy", "CartPole-v1", seed=0, **FAST)
        model.learn(300)
        obs = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
        np.random.seed(0)
        results.append((model.predict(obs, deterministic=False)[0], model.policy.state_dict()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    for name, value in results[0][1].items():
        th.testing.assert_close(value, results[1][1][name])


def newest_step(model: SoftQLambda) -> tuple[int, np.ndarray]:
    """The slot of the newest stored step of env 0 and its next observation, as the buffer reads it."""
    buffer = model.replay_buffer
    slot = (buffer.pos - 1) % buffer.buffer_size
    return slot, buffer._get_samples(np.array([slot]), env_indices=np.array([0])).next_observations[0, 0].numpy()


@pytest.mark.parametrize("reset_num_timesteps", [True, False])
def test_new_learn_starts_a_new_episode_in_the_buffer(reset_num_timesteps: bool) -> None:
    """A `learn()` that resets the env ends the newest stored episode there (truncated, with its true next
    observation); one that continues the running episode (`reset_num_timesteps=False`) continues it."""
    model = SoftQLambda("MlpPolicy", "CartPole-v1", seed=0, **{**FAST, "learning_starts": 1_000})
    model.learn(5)
    slot, true_next_obs = newest_step(model)
    assert not model.replay_buffer.dones[slot, 0]
    model.learn(5, reset_num_timesteps=reset_num_timesteps)
    samples = model.replay_buffer._get_samples(np.array([slot]), env_indices=np.array([0]))
    np.testing.assert_array_equal(samples.next_observations[0, 0].numpy(), true_next_obs)
    assert samples.truncated[0, 0].item() == float(reset_num_timesteps)
    assert samples.terminated[0, 0].item() == 0.0
    assert samples.continues[0, 0].item() == float(not reset_num_timesteps)
    if not reset_num_timesteps:  # the next stored step is the one that followed
        np.testing.assert_array_equal(samples.observations[0, 1].numpy(), true_next_obs)


@pytest.mark.parametrize("truncate_last_traj", [True, False])
def test_loaded_replay_buffer_ends_its_newest_episode(tmp_path, truncate_last_traj: bool) -> None:
    """`load_replay_buffer(truncate_last_traj=True)` (SB3's default) takes the newest episode as finished; the loaded
    buffer samples windows of the model's `sequence_length`."""
    model = SoftQLambda("MlpPolicy", "CartPole-v1", seed=0, sequence_length=4, **{**FAST, "learning_starts": 1_000})
    model.learn(5)
    model.save_replay_buffer(tmp_path / "buffer.pkl")
    slot, true_next_obs = newest_step(model)
    other = SoftQLambda("MlpPolicy", "CartPole-v1", seed=1, sequence_length=6, **FAST)
    other.load_replay_buffer(tmp_path / "buffer.pkl", truncate_last_traj=truncate_last_traj)
    assert other.replay_buffer.sample(2).rewards.shape == (2, 6)
    assert bool(other.replay_buffer.dones[slot, 0]) == truncate_last_traj
    assert bool(other.replay_buffer.timeouts[slot, 0]) == truncate_last_traj
    np.testing.assert_array_equal(newest_step(other)[1], true_next_obs)


def test_replay_buffer_kwargs_are_left_as_given(tmp_path) -> None:
    """The window length goes to the buffer without being written into the user's `replay_buffer_kwargs`, so one dict
    serves several models, and `load(sequence_length=...)` changes the window length of a saved model."""
    replay_buffer_kwargs = dict(handle_timeout_termination=True)
    for sequence_length in (4, 6):
        model = SoftQLambda(
            "MlpPolicy", "CartPole-v1", sequence_length=sequence_length, replay_buffer_kwargs=replay_buffer_kwargs, **FAST
        )
        assert model.replay_buffer.sequence_length == sequence_length
    assert replay_buffer_kwargs == dict(handle_timeout_termination=True)
    model.save(tmp_path / "model.zip")
    loaded = SoftQLambda.load(tmp_path / "model.zip", sequence_length=8)
    assert loaded.sequence_length == 8 and loaded.replay_buffer.sequence_length == 8
    assert loaded.replay_buffer_kwargs == dict(handle_timeout_termination=True)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize(
    "saved, given, expected_value, learned",
    [
        (0.2, 0.2, "saved", False),  # the same setting: the saved temperature
        (0.2, 0.5, 0.5, False),  # another fixed value replaces it
        ("auto", "auto", "saved", True),  # the learned temperature and its optimiser state go on
        ("auto", 0.5, 0.5, False),  # fixed from now on
        (0.2, "auto_0.3", 0.3, True),  # learned from now on, from 0.3
        ("auto", "auto_0.3", 0.3, True),  # learned again from 0.3
    ],
)
@pytest.mark.parametrize("through", ["kwargs", "custom_objects"])
def test_load_with_another_temperature(
    tmp_path, model_class: type[SoftQ], saved, given, expected_value, learned, through: str
) -> None:
    model = model_class("MlpPolicy", "CartPole-v1", ent_coef=saved, seed=0, **FAST)
    model.learn(200)
    saved_value = model.policy.ent_coef.item()
    model.save(tmp_path / "model.zip")

    if through == "kwargs":
        loaded = model_class.load(tmp_path / "model.zip", env=model.get_env(), ent_coef=given)
    else:
        loaded = model_class.load(tmp_path / "model.zip", env=model.get_env(), custom_objects=dict(ent_coef=given))
    assert loaded.ent_coef == given
    value = loaded.policy.ent_coef.item()
    assert value == pytest.approx(saved_value if expected_value == "saved" else expected_value)
    assert (loaded.ent_coef_optimizer is not None) == learned == loaded.policy.temperature.log_ent_coef.requires_grad
    if learned:
        assert loaded.ent_coef_optimizer.param_groups[0]["params"][0] is loaded.policy.temperature.log_ent_coef
        # the saved optimiser state is kept only with the saved temperature
        assert bool(optimizer_tensors(loaded.ent_coef_optimizer)) == (expected_value == "saved")
    loaded.learn(200, reset_num_timesteps=False)
    assert (loaded.policy.ent_coef.item() != value) == learned
    with pytest.raises(ValueError, match="ent_coef"):
        model_class.load(tmp_path / "model.zip", ent_coef=-1.0)


@pytest.mark.parametrize("model_class", ALGOS)
@pytest.mark.parametrize("saved", [0.2, "auto"])
def test_set_parameters_keeps_a_fixed_temperature(tmp_path, model_class: type[SoftQ], saved) -> None:
    """The networks are loaded; a fixed temperature is the loading model's hyperparameter, and stays."""
    source = model_class("MlpPolicy", "CartPole-v1", ent_coef=saved, seed=0, **FAST)
    source.learn(200)
    source.save(tmp_path / "model.zip")
    for load_from in (tmp_path / "model.zip", source.get_parameters()):
        model = model_class("MlpPolicy", "CartPole-v1", ent_coef=0.5, seed=1, **FAST)
        model.set_parameters(load_from)
        assert model.policy.ent_coef.item() == pytest.approx(0.5) and model.ent_coef_optimizer is None
        for name, value in source.policy.state_dict().items():
            if name != "temperature.log_ent_coef":
                th.testing.assert_close(model.policy.state_dict()[name], value)
        model.learn(100)
    # A model that learns its temperature loads the saved one (and needs the optimiser state, as SB3 requires)
    learner = model_class("MlpPolicy", "CartPole-v1", ent_coef="auto", seed=1, **FAST)
    if saved == "auto":
        learner.set_parameters(tmp_path / "model.zip")
        assert learner.policy.ent_coef.item() == pytest.approx(source.policy.ent_coef.item())
    else:
        with pytest.raises(ValueError, match="ent_coef_optimizer"):
            learner.set_parameters(tmp_path / "model.zip")


@pytest.mark.parametrize(
    "model_class, kwargs, match",
    [
        (SoftQ, dict(gamma=1.5), "gamma"),
        (SoftQ, dict(batch_size=0), "batch_size"),
        (SoftQLambda, dict(trace="watkins"), "trace"),
        (SoftQLambda, dict(trace_lambda=5.0), "trace_lambda"),
        (SoftQLambda, dict(sequence_length=0), "sequence_length"),
    ],
)
def test_load_checks_its_arguments(tmp_path, model_class: type[SoftQ], kwargs: dict, match: str) -> None:
    model_class("MlpPolicy", "CartPole-v1", **FAST).save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=match):
        model_class.load(tmp_path / "model.zip", **kwargs)


@pytest.mark.parametrize("model_class", ALGOS)
def test_deepcopy_and_pickle_after_training(model_class: type[SoftQ]) -> None:
    """The model holds no autograd graph, and an SB3 prior pickles (multiprocessing, Ray)."""
    env = gym.make("CartPole-v1")
    prior = PPO("MlpPolicy", env, n_steps=64, batch_size=32, policy_kwargs=dict(net_arch=[8]), seed=0)
    model = model_class("MlpPolicy", env, ent_coef="auto", reference_policy=prior, seed=0, **FAST)
    model.learn(200)
    copied = copy.deepcopy(model)
    assert copied.ent_coef_optimizer.param_groups[0]["params"][0] is copied.policy.temperature.log_ent_coef
    before = model.policy.ent_coef.item()
    copied.learn(100, reset_num_timesteps=False)
    assert model.policy.ent_coef.item() == before != copied.policy.ent_coef.item()
    policy = pickle.loads(pickle.dumps(model.policy))
    obs = th.as_tensor(env.reset(seed=0)[0][None])
    th.testing.assert_close(policy.action_log_probs(obs), model.policy.action_log_probs(obs))


@pytest.mark.parametrize("saved_class, loading_class", [(SoftQ, SoftQLambda), (SoftQLambda, SoftQ)])
def test_load_refuses_a_file_of_the_other_algorithm(tmp_path, saved_class: type[SoftQ], loading_class: type[SoftQ]) -> None:
    """SoftQLambda is a SoftQ subclass with the same policy: the file names its algorithm, checked before building."""
    saved_class("MlpPolicy", "CartPole-v1", **FAST).save(tmp_path / "model.zip")
    expected = f"holds a {saved_class.__name__} model.*expected a {loading_class.__name__} model"
    with pytest.raises(ValueError, match=expected):
        loading_class.load(tmp_path / "model.zip")
    with open(tmp_path / "model.zip", "rb") as handle, pytest.raises(ValueError, match=expected):
        loading_class.load(handle, env=gym.make("CartPole-v1"), ent_coef=0.5)
    # The right class still loads it, also through the parameters alone
    assert type(saved_class.load(tmp_path / "model.zip")) is saved_class
    loading_class("MlpPolicy", "CartPole-v1", **FAST).set_parameters(tmp_path / "model.zip")


BUFFERS = {SoftQ: "ReplayBuffer", SoftQLambda: "SequenceReplayBuffer"}


def saved_buffer(tmp_path, model_class: type[SoftQ], env_id: str = "CartPole-v1", n_envs: int = 1) -> str:
    model = model_class("MlpPolicy", make_vec_env(env_id, n_envs=n_envs), seed=0, **{**FAST, "learning_starts": 1_000})
    model.learn(40)
    path = str(tmp_path / f"{model_class.__name__}_{env_id}_{n_envs}.pkl")
    model.save_replay_buffer(path)
    return path


@pytest.mark.parametrize("model_class", ALGOS)
def test_load_replay_buffer_refuses_what_the_model_cannot_train_on(tmp_path, model_class: type[SoftQ]) -> None:
    other_class = SoftQLambda if model_class is SoftQ else SoftQ
    model = model_class("MlpPolicy", "CartPole-v1", seed=0, **FAST)
    buffer = model.replay_buffer
    for path, match in (
        (
            saved_buffer(tmp_path, other_class),
            f"is a {BUFFERS[other_class]}, but {model_class.__name__} needs a {BUFFERS[model_class]}",
        ),
        (saved_buffer(tmp_path, model_class, n_envs=4), "4 envs.*expected n_envs=1"),
        (saved_buffer(tmp_path, model_class, env_id="Acrobot-v1"), r"observation shape is \(6,\).*\(4,\)"),
    ):
        with pytest.raises(ValueError, match=match):
            model.load_replay_buffer(path)
        assert model.replay_buffer is buffer  # unchanged
    # A buffer of 4 envs loads into a model of 4 envs, and training goes on
    model = model_class("MlpPolicy", make_vec_env("CartPole-v1", n_envs=4), seed=0, **FAST)
    model.load_replay_buffer(saved_buffer(tmp_path, model_class, n_envs=4))
    assert model.replay_buffer.n_envs == 4
    model.learn(200, reset_num_timesteps=False)


def test_behaviour_probabilities_reach_the_buffer() -> None:
    """The probabilities mu(a|s) of the sampled actions are handed to the buffer's next `add()` (no method is bound
    on the buffer), for that one call."""
    kwargs = dict(exploration_initial_eps=0.5, exploration_final_eps=0.5, learning_starts=20, seed=0)
    model = SoftQLambda("MlpPolicy", "CartPole-v1", **{**FAST, **kwargs})
    model.learn(60)
    buffer = model.replay_buffer
    assert "add" not in vars(buffer) and buffer._next_behaviour_probs is None
    stored = buffer.behaviour_probs[: buffer.pos, 0]
    np.testing.assert_array_equal(stored[:20], 0.5)  # uniform before learning_starts
    assert np.all((stored[20:] >= 0.25) & (stored[20:] <= 0.75))  # 0.5 pi_B + 0.25
    obs = np.zeros((1, 4), dtype=np.float32)
    step = (obs, obs, np.array([0]), np.array([1.0]), np.array([False]), [{}])
    buffer.set_next_behaviour_probs(np.array([0.3]))
    buffer.add(*step)
    buffer.add(*step)
    assert buffer.behaviour_probs[buffer.pos - 2, 0] == np.float32(0.3) and np.isnan(buffer.behaviour_probs[buffer.pos - 1, 0])
    buffer.set_next_behaviour_probs(np.array([0.3]))
    buffer.add(*step, behaviour_probs=np.array([0.9]))  # given to add() itself: those are stored, and the others dropped
    buffer.add(*step)
    assert buffer.behaviour_probs[buffer.pos - 2, 0] == np.float32(0.9) and np.isnan(buffer.behaviour_probs[buffer.pos - 1, 0])


@pytest.mark.parametrize("model_class", [SoftQ, SoftQLambda])
def test_load_a_file_of_the_first_release(tmp_path, model_class: type[SoftQ]) -> None:
    """Files saved by sb3_softq 0.1.0 hold log(tau) as the policy's `log_ent_coef` and no algorithm name: they load,
    with the same temperature and predictions."""
    from stable_baselines3.common.save_util import load_from_zip_file, save_to_zip_file

    model = model_class("MlpPolicy", IdentityEnv(4), learning_starts=10, buffer_size=100, batch_size=4, seed=0)
    model.learn(60)
    model.save(tmp_path / "new.zip")
    data, params, variables = load_from_zip_file(tmp_path / "new.zip")
    data.pop("_algorithm_name", None)
    params["policy"]["log_ent_coef"] = params["policy"].pop("temperature.log_ent_coef")
    save_to_zip_file(tmp_path / "old.zip", data=data, params=params, pytorch_variables=variables)

    loaded = model_class.load(tmp_path / "old.zip", env=IdentityEnv(4))
    assert th.equal(loaded.policy.temperature.log_ent_coef, model.policy.temperature.log_ent_coef)
    obs = np.arange(4)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])
    loaded.learn(20)  # and it trains on
