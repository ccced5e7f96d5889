"""
What the tabular learner records for analysis: the one-step TD error of every step (the reward prediction error
signal) with its episode index, and the undiscounted return and length of every finished episode.
"""

import numpy as np
from numpy.typing import NDArray

from sb3_softq.tabular.soft import FloatArray


class LearningHistory:
    """
    The TD errors and episode statistics of a learner, appended step by step.

    :ivar current_return: undiscounted return of the running episode so far
    :ivar current_length: number of steps of the running episode so far
    """

    #: The arrays of :meth:`arrays`, as saved by :func:`~sb3_softq.tabular.persistence.save_model`.
    ARRAY_NAMES = ("td_errors", "td_episode_index", "episode_returns", "episode_lengths")

    def __init__(self) -> None:
        self._td_errors: list[float] = []
        self._td_episodes: list[int] = []
        self._episode_returns: list[float] = []
        self._episode_lengths: list[int] = []
        self.current_return = 0.0
        self.current_length = 0

    def record_step(self, td_error: float, episode: int, reward: float) -> None:
        """
        :param td_error: :math:`\\delta_t` of the step
        :param episode: the index of its episode
        :param reward: :math:`r_t`
        """
        self._td_errors.append(float(td_error))
        self._td_episodes.append(episode)
        self.current_return += reward
        self.current_length += 1

    def start_episode(self) -> None:
        """Start counting the return and length of a new episode."""
        self.current_return, self.current_length = 0.0, 0

    def end_episode(self) -> None:
        """Record the return and length of the episode that ends."""
        self._episode_returns.append(self.current_return)
        self._episode_lengths.append(self.current_length)

    @property
    def td_errors(self) -> FloatArray:
        """One-step TD errors :math:`\\delta_t` of every step learned from, in order."""
        return np.asarray(self._td_errors, dtype=np.float64)

    @property
    def td_episode_index(self) -> NDArray[np.int64]:
        """Episode index (0, 1, ...) of each entry of :attr:`td_errors`."""
        return np.asarray(self._td_episodes, dtype=np.int64)

    @property
    def episode_returns(self) -> FloatArray:
        """Undiscounted return of each finished episode."""
        return np.asarray(self._episode_returns, dtype=np.float64)

    @property
    def episode_lengths(self) -> NDArray[np.int64]:
        """Length of each finished episode."""
        return np.asarray(self._episode_lengths, dtype=np.int64)

    def arrays(self) -> dict[str, np.ndarray]:
        """:return: the four histories by their names in :data:`ARRAY_NAMES`, as arrays (for saving)."""
        return {name: getattr(self, name) for name in self.ARRAY_NAMES}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "LearningHistory":
        """
        :param arrays: the arrays of :meth:`arrays` (more keys are ignored)
        :return: the history they hold (with no running episode)
        """
        history = cls()
        history._td_errors = arrays["td_errors"].tolist()
        history._td_episodes = arrays["td_episode_index"].tolist()
        history._episode_returns = arrays["episode_returns"].tolist()
        history._episode_lengths = arrays["episode_lengths"].tolist()
        return history
