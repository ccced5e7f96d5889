"""Features extractors for small grid observations (MinAtar), usable by every SB3 algorithm with a features extractor."""

import gymnasium as gym
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import is_image_space, is_image_space_channels_first
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn


def _output_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """:return: the length of a convolution's output along one axis (PyTorch's formula, dilation 1)"""
    return (size + 2 * padding - kernel_size) // stride + 1


class MinAtarCNN(BaseFeaturesExtractor):
    """
    MinAtar network: the features extractor of the DQN of
    Young and Tian (2019), "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible Reinforcement Learning
    Experiments" (https://arxiv.org/abs/1903.03176): one convolution, then one fully connected layer,

    .. math::

        \\phi(s) = \\mathrm{ReLU}\\big(W\\,\\mathrm{flatten}(\\mathrm{ReLU}(\\mathrm{conv}_{3\\times 3,\\,16}(s))) + b\\big)
        \\in \\mathbb{R}^{128}

    (by default: 16 channels, 3x3 kernel, stride 1, no padding, 128 features). The Q-network's output layer goes on
    top of it; pass ``net_arch=[]`` in ``policy_kwargs`` for the paper's network (otherwise the policy adds its
    default hidden layers between the features and the Q-values).

    Observations come as the environment gives them, without a wrapper: boolean ``[H, W, C]`` grids as MinAtar's,
    or ``uint8`` ones. The policy casts them to floats before this network (SB3's ``preprocess_obs``):

    - booleans become 0/1;
    - ``uint8`` with other bounds than ``[0, 255]`` (e.g. a 0/1 grid) are cast unscaled;
    - ``uint8`` with bounds ``[0, 255]`` are images for SB3: the algorithm wraps the environment in a
      ``VecTransposeImage`` when they look channels-last (giving ``[C, H, W]``), and the policy divides them by 255
      when ``normalize_images=True`` (the default) and leaves them in ``[0, 255]`` with ``normalize_images=False``.

    The layout is read from the observation space: with ``channels_last=None``, SB3's rule for its images (the
    smallest dimension is the channels, :func:`~stable_baselines3.common.preprocessing.is_image_space_channels_first`)
    and channels-last (``[H, W, C]``, MinAtar's layout) for every other space, whose sides may be smaller than the
    number of channels (Seaquest: ``10 x 10 x 10``).

    Used through ``policy_kwargs``, with any off-policy algorithm of SB3, sb3-contrib or this package:

    .. code-block:: python

        from stable_baselines3 import DQN
        from sb3_softq import SoftQLambda
        from sb3_softq.common.torch_layers import MinAtarCNN
        from sb3_softq.zoo.minatar import register_minatar_envs

        register_minatar_envs()  # MinAtar's Gymnasium ids
        policy_kwargs = dict(features_extractor_class=MinAtarCNN, net_arch=[])
        DQN("CnnPolicy", "MinAtar/Breakout-v1", policy_kwargs=policy_kwargs)
        SoftQLambda("CnnPolicy", "MinAtar/Breakout-v1", policy_kwargs=policy_kwargs)

    :param observation_space: a ``Box`` of 3 dimensions
    :param features_dim: number of features (units of the fully connected layer)
    :param n_channels: number of channels of the convolution
    :param kernel_size: side of the convolution's square kernel
    :param stride: stride of the convolution
    :param padding: zero padding on each side of the grid
    :param channels_last: whether observations are ``[H, W, C]`` (True) or ``[C, H, W]`` (False); ``None`` reads it
        from the space as described above
    """

    def __init__(
        self,
        observation_space: gym.Space,
        features_dim: int = 128,
        n_channels: int = 16,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int = 0,
        channels_last: bool | None = None,
    ) -> None:
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 3:
            raise TypeError(
                f"`observation_space` of MinAtarCNN must be a Box of 3 dimensions ([H, W, C] or [C, H, W]), "
                f"got {observation_space}"
            )
        for name, value, minimum in (
            ("features_dim", features_dim, 1),
            ("n_channels", n_channels, 1),
            ("kernel_size", kernel_size, 1),
            ("stride", stride, 1),
            ("padding", padding, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
                raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
        if channels_last is None:
            channels_last = not is_image_space_channels_first(observation_space) if is_image_space(observation_space) else True
        super().__init__(observation_space, features_dim)
        self.channels_last = channels_last
        shape = observation_space.shape
        height, width, in_channels = shape if channels_last else (shape[1], shape[2], shape[0])
        out_height = _output_size(height, kernel_size, stride, padding)
        out_width = _output_size(width, kernel_size, stride, padding)
        if out_height < 1 or out_width < 1:
            raise ValueError(
                f"`kernel_size` {kernel_size} (stride {stride}, padding {padding}) is larger than the {height} x {width} "
                f"grid of {observation_space}"
            )
        self.cnn = nn.Sequential(
            nn.Conv2d(in_channels, n_channels, kernel_size=kernel_size, stride=stride, padding=padding),
            nn.ReLU(),
            nn.Flatten(),
        )
        self.linear = nn.Sequential(nn.Linear(n_channels * out_height * out_width, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        """
        :param observations: float observations ``[batch, H, W, C]`` (channels-last) or ``[batch, C, H, W]``
        :return: features ``[batch, features_dim]``
        """
        if self.channels_last:
            observations = observations.permute(0, 3, 1, 2)
        return self.linear(self.cnn(observations))
