"""MinAtar: the grid features extractor with SB3, sb3-contrib and our algorithms, the zoo entries, train / enjoy."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
import yaml
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecTransposeImage

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.common.torch_layers import MinAtarCNN

pytest.importorskip("minatar")
pytest.importorskip("rl_zoo3")
sb3_contrib = pytest.importorskip("sb3_contrib")

from sb3_softq.zoo import hyperparams_path, load_hyperparams  # noqa: E402
from sb3_softq.zoo.minatar import register_minatar_envs  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_ID = "MinAtar/Breakout-v1"
#: The five games, which both hyperparameter files have entries for (two of them are held out of tuning and
#: benchmarks: they are only read here, never trained on)
MINATAR_IDS = [f"MinAtar/{game}-v1" for game in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")]
ALGOS: dict[str, type[BaseAlgorithm]] = {
    "dqn": DQN,
    "qrdqn": sb3_contrib.QRDQN,
    "softq": SoftQ,
    "softq_lambda": SoftQLambda,
}
FAST: dict[str, dict[str, Any]] = {
    "dqn": dict(learning_starts=100, buffer_size=1000, batch_size=16, target_update_interval=50),
    "qrdqn": dict(learning_starts=100, buffer_size=1000, batch_size=16, target_update_interval=50),
    "softq": dict(learning_starts=100, buffer_size=1000, batch_size=16, target_update_interval=50),
    "softq_lambda": dict(learning_starts=100, buffer_size=1000, batch_size=4, sequence_length=4, target_update_interval=50),
}
SMALL = dict(features_extractor_class=MinAtarCNN, features_extractor_kwargs=dict(n_channels=4, features_dim=16), net_arch=[])


def small_policy_kwargs(algo: str, **kwargs: Any) -> dict[str, Any]:
    """A small network with the extractor (and few quantiles for QR-DQN)."""
    return {**SMALL, **(dict(n_quantiles=5) if algo == "qrdqn" else {}), **kwargs}


register_minatar_envs()


class GridEnv(gym.Env):
    """Random grids of a given shape and dtype: boolean, 0/1 ``uint8`` or ``uint8`` images in [0, 255]."""

    def __init__(self, shape: tuple[int, ...], dtype: type = bool, high: int = 1, n_actions: int = 3) -> None:
        self.observation_space = spaces.Box(0, high, shape=shape, dtype=dtype)
        self.action_space = spaces.Discrete(n_actions)
        self._steps = 0

    def _obs(self) -> np.ndarray:
        return self.observation_space.sample()

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        self._steps = 0
        return self._obs(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._steps += 1
        return self._obs(), float(action == 0), self._steps % 17 == 0, False, {}


SPACES = {
    "bool 10x10x4": spaces.Box(0, 1, (10, 10, 4), dtype=bool),
    "bool 8x12x1": spaces.Box(0, 1, (8, 12, 1), dtype=bool),
    "bool 10x10x7": spaces.Box(0, 1, (10, 10, 7), dtype=bool),
    "bool 10x10x10": spaces.Box(0, 1, (10, 10, 10), dtype=bool),
    "uint8 0/1 10x10x4": spaces.Box(0, 1, (10, 10, 4), dtype=np.uint8),
    "uint8 0/1 8x12x1": spaces.Box(0, 1, (8, 12, 1), dtype=np.uint8),
    "uint8 0/1 10x10x7": spaces.Box(0, 1, (10, 10, 7), dtype=np.uint8),
}


def float_batch(space: spaces.Box, batch_size: int = 5) -> th.Tensor:
    return th.as_tensor(np.stack([space.sample() for _ in range(batch_size)])).float()


@pytest.mark.parametrize("name", list(SPACES))
def test_extractor_shapes_and_gradients(name: str) -> None:
    space = SPACES[name]
    space.seed(0)
    extractor = MinAtarCNN(space)
    height, width, channels = space.shape
    assert extractor.channels_last  # MinAtar's [H, W, C], whatever the sizes (10 channels on a 10 x 10 grid)
    # The MinAtar paper's network: 3x3 convolution with 16 channels, stride 1, then 128 units
    conv, linear = extractor.cnn[0], extractor.linear[0]
    assert (conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride) == (channels, 16, (3, 3), (1, 1))
    assert (linear.in_features, linear.out_features) == (16 * (height - 2) * (width - 2), 128)
    assert extractor.features_dim == 128
    features = extractor(float_batch(space))
    assert features.shape == (5, 128) and (features >= 0).all()
    features.sum().backward()
    for parameter_name, parameter in extractor.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, parameter_name


@pytest.mark.parametrize("kwargs", [dict(n_channels=8, kernel_size=2, features_dim=32), dict(stride=2, padding=1)])
def test_extractor_sizes_are_configurable(kwargs: dict[str, int]) -> None:
    space = SPACES["bool 8x12x1"]
    extractor = MinAtarCNN(space, **kwargs)
    conv = extractor.cnn[0]
    assert conv.out_channels == kwargs.get("n_channels", 16)
    assert conv.kernel_size == (kwargs.get("kernel_size", 3),) * 2
    assert conv.stride == (kwargs.get("stride", 1),) * 2 and conv.padding == (kwargs.get("padding", 0),) * 2
    observations = float_batch(space)
    # The flattened size is computed, not guessed: the convolution's output feeds the linear layer
    assert extractor.linear[0].in_features == extractor.cnn(observations.permute(0, 3, 1, 2)).shape[1]
    assert extractor(observations).shape == (5, kwargs.get("features_dim", 128))


def test_extractor_layouts_agree() -> None:
    """Channels-first input with ``channels_last=False`` gives the features of the same grid channels-last."""
    space_hwc = SPACES["bool 10x10x7"]
    space_chw = spaces.Box(0, 1, (7, 10, 10), dtype=bool)
    hwc, chw = MinAtarCNN(space_hwc), MinAtarCNN(space_chw, channels_last=False)
    chw.load_state_dict(hwc.state_dict())
    observations = float_batch(space_hwc)
    th.testing.assert_close(hwc(observations), chw(observations.permute(0, 3, 1, 2).contiguous()))
    # Explicit channels_last wins over the inference
    assert not MinAtarCNN(SPACES["bool 10x10x4"], channels_last=False, kernel_size=2).channels_last


def test_extractor_reads_the_layout_of_images_as_sb3_does() -> None:
    # uint8 images in [0, 255]: SB3's rule (the smallest dimension holds the channels)
    assert MinAtarCNN(spaces.Box(0, 255, (10, 10, 3), dtype=np.uint8)).channels_last
    assert not MinAtarCNN(spaces.Box(0, 255, (3, 10, 10), dtype=np.uint8)).channels_last
    # Any other space: channels-last, MinAtar's layout, even where the channels are not the smallest dimension
    assert MinAtarCNN(spaces.Box(0, 1, (3, 10, 10), dtype=bool), kernel_size=2).channels_last


def test_extractor_bad_input() -> None:
    with pytest.raises(TypeError, match="observation_space"):
        MinAtarCNN(spaces.Box(0, 1, (10, 10), dtype=bool))
    with pytest.raises(TypeError, match="observation_space"):
        MinAtarCNN(spaces.Discrete(3))
    with pytest.raises(ValueError, match="kernel_size"):
        MinAtarCNN(SPACES["bool 8x12x1"], kernel_size=9)
    for name in ("features_dim", "n_channels", "kernel_size", "stride"):
        with pytest.raises(ValueError, match=name):
            MinAtarCNN(SPACES["bool 10x10x4"], **{name: 0})
    with pytest.raises(ValueError, match="padding"):
        MinAtarCNN(SPACES["bool 10x10x4"], padding=-1)


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("normalize_images", [True, False])
def test_normalize_images(algo: str, normalize_images: bool) -> None:
    """
    Booleans and 0/1 ``uint8`` reach the network as 0/1 whatever ``normalize_images``; ``uint8`` images in [0, 255]
    are transposed to channels-first by SB3 and divided by 255 only with ``normalize_images=True``.
    """
    policy_kwargs = small_policy_kwargs(algo, normalize_images=normalize_images)
    for env, scale in ((GridEnv((10, 10, 4)), 1.0), (GridEnv((8, 12, 1), np.uint8), 1.0)):
        model = ALGOS[algo]("CnnPolicy", env, policy_kwargs=policy_kwargs, seed=0, **FAST[algo])
        check_features(model, scale, channels_last=True)
    model = ALGOS[algo]("CnnPolicy", GridEnv((8, 12, 3), np.uint8, high=255), policy_kwargs=policy_kwargs, **FAST[algo])
    assert isinstance(model.get_env(), VecTransposeImage)
    assert model.observation_space.shape == (3, 8, 12)
    check_features(model, 255.0 if normalize_images else 1.0, channels_last=False)


def features_extractors(model: BaseAlgorithm) -> list[MinAtarCNN]:
    extractors = [module for module in model.policy.modules() if isinstance(module, MinAtarCNN)]
    assert len(extractors) >= 2  # online and target networks
    return extractors


def check_features(model: BaseAlgorithm, scale: float, channels_last: bool) -> None:
    """The network sees the observations as floats divided by ``scale``."""
    extractors = features_extractors(model)
    assert all(extractor.channels_last == channels_last for extractor in extractors)
    space = model.observation_space
    observations = th.as_tensor(np.stack([space.sample() for _ in range(4)]))
    q_net = next(
        module for module in model.policy.modules() if isinstance(getattr(module, "features_extractor", None), MinAtarCNN)
    )
    with th.no_grad():
        expected = q_net.features_extractor(observations.float() / scale)
        th.testing.assert_close(q_net.extract_features(observations, q_net.features_extractor), expected)


@pytest.mark.parametrize("algo", list(ALGOS))
@pytest.mark.parametrize("policy", ["MlpPolicy", "CnnPolicy"])
def test_algorithms_train_with_the_extractor(algo: str, policy: str) -> None:
    model = ALGOS[algo](policy, ENV_ID, policy_kwargs=small_policy_kwargs(algo), seed=0, **FAST[algo])
    before = {name: value.clone() for name, value in model.policy.state_dict().items() if "features_extractor" in name}
    model.learn(300)
    extractors = features_extractors(model)
    assert all(extractor.features_dim == 16 for extractor in extractors)
    after = model.policy.state_dict()
    assert any(not th.equal(before[name], after[name]) for name in before), "the extractor was not trained"
    observation = model.get_env().reset()
    assert model.predict(observation, deterministic=True)[0].shape == (1,)


def load_yaml(path: str) -> dict[str, Any]:
    with open(path) as handle:
        return yaml.safe_load(handle)


@pytest.mark.parametrize("algo", ["softq", "softq_lambda"])
def test_zoo_entries(algo: str) -> None:
    """Every game has an entry, all with the same values, naming the extractor in ``policy_kwargs``."""
    entries = load_yaml(hyperparams_path(algo))
    assert set(MINATAR_IDS) <= set(entries)
    assert all(entries[env_id] == entries[ENV_ID] for env_id in MINATAR_IDS)
    # As rl-zoo3 evaluates them
    policy, kwargs, n_timesteps = load_hyperparams(algo, ENV_ID)
    assert policy == "CnnPolicy" and n_timesteps == 500_000
    assert kwargs["policy_kwargs"]["features_extractor_class"] is MinAtarCNN
    assert kwargs["policy_kwargs"]["net_arch"] == []


def test_register_minatar_envs() -> None:
    assert register_minatar_envs() and register_minatar_envs()  # idempotent
    for env_id in MINATAR_IDS:
        assert env_id in gym.registry


def small_overrides(algo: str) -> list[str]:
    """rl-zoo3 ``--hyperparams`` for a few hundred steps (the entry's network and optimiser are kept)."""
    common = ["learning_starts:100", "buffer_size:1000", "target_update_interval:50"]
    return common + (["batch_size:4", "sequence_length:4"] if algo == "softq_lambda" else ["batch_size:16"])


def run_zoo(*args: str, cwd: Path) -> str:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    result = subprocess.run(
        [sys.executable, "-m", "sb3_softq.zoo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.mark.parametrize("algo", ["softq", "softq_lambda"])
def test_zoo_train_then_enjoy(algo: str, tmp_path: Path) -> None:
    output = run_zoo(
        "train", "--algo", algo, "--env", ENV_ID, "-n", "300", "-f", "logs", "--seed", "0", "--eval-freq", "-1",
        "--hyperparams", *small_overrides(algo),
        cwd=tmp_path,
    )  # fmt: skip
    assert f"Loading hyperparameters from: {hyperparams_path(algo)}" in output
    run_dir = tmp_path / "logs" / algo / "MinAtar-Breakout-v1_1"
    model_path = run_dir / "MinAtar-Breakout-v1.zip"
    assert model_path.is_file()
    model = ALGOS[algo].load(model_path, buffer_size=2)
    assert model.num_timesteps == 300
    assert all(extractor.features_dim == 128 for extractor in features_extractors(model))

    output = run_zoo(
        "enjoy", "--algo", algo, "--env", ENV_ID, "-f", "logs", "--no-render", "-n", "50", "--seed", "0", cwd=tmp_path
    )
    assert f"Loading {Path('logs') / algo / 'MinAtar-Breakout-v1_1' / 'MinAtar-Breakout-v1.zip'}" in output


@pytest.mark.parametrize("algo", ["softq", "softq_lambda"])
def test_python_api_train_save_load(algo: str, tmp_path: Path) -> None:
    """The shipped entry (with a small buffer and early start) through the Python API; predictions survive save/load."""
    policy, kwargs, _ = load_hyperparams(algo, ENV_ID)
    kwargs.update(learning_starts=100, buffer_size=1000, target_update_interval=50)
    model = ALGOS[algo](policy, ENV_ID, seed=0, **kwargs)
    model.learn(300)
    env = model.get_env()
    observations = np.concatenate([env.reset()] + [env.step(np.array([action]))[0] for action in (0, 1, 2, 1)])
    actions, _ = model.predict(observations, deterministic=True)
    with th.no_grad():
        q_values = model.policy.q_values(model.policy.obs_to_tensor(observations)[0])
    model.save(tmp_path / "model.zip")
    loaded = ALGOS[algo].load(tmp_path / "model.zip", env=model.get_env())
    np.testing.assert_array_equal(loaded.predict(observations, deterministic=True)[0], actions)
    with th.no_grad():
        th.testing.assert_close(loaded.policy.q_values(loaded.policy.obs_to_tensor(observations)[0]), q_values)
    assert all(extractor.channels_last for extractor in features_extractors(loaded))
    loaded.learn(100, reset_num_timesteps=False)
    assert loaded.num_timesteps == 400
