"""
Small finite MDPs: a model container, a random generator, a gymnasium environment that samples a model, and the
exact model of gymnasium's toy-text environments (FrozenLake, CliffWalking, Taxi) for planning with
:func:`~sb3_softq.tabular.soft_value_iteration`.
"""

from dataclasses import dataclass
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from numpy.typing import NDArray

from sb3_softq.common.checks import check_number
from sb3_softq.tabular.soft import FloatArray, soft_value_iteration


@dataclass
class TabularMDP:
    """
    A finite MDP :math:`(P, r, \\rho_0)`, with terminal states modelled as absorbing zero-reward states.

    :param transitions: :math:`P(s'|s,a)`, ``[n_states, n_actions, n_states]``
    :param rewards: expected rewards :math:`r(s,a)`, ``[n_states, n_actions]``
    :param initial_distribution: start-state distribution :math:`\\rho_0`, ``[n_states]``
    :param terminal: ``[n_states]`` booleans; entering a terminal state ends the episode (``terminated=True``).
        A terminal state must be absorbing with zero reward. ``None`` for no terminal state.
    """

    transitions: FloatArray
    rewards: FloatArray
    initial_distribution: FloatArray
    terminal: NDArray[np.bool_] | None = None

    def __post_init__(self) -> None:
        self.transitions = np.asarray(self.transitions, dtype=np.float64)
        self.rewards = np.asarray(self.rewards, dtype=np.float64)
        self.initial_distribution = np.asarray(self.initial_distribution, dtype=np.float64)
        n_states, n_actions = self.rewards.shape if self.rewards.ndim == 2 else (-1, -1)
        if self.transitions.shape != (n_states, n_actions, n_states):
            raise ValueError(
                f"transitions must have shape [n_states, n_actions, n_states] = {(n_states, n_actions, n_states)} "
                f"(rewards have shape {self.rewards.shape}), got {self.transitions.shape}"
            )
        if np.any(self.transitions < 0.0) or not np.allclose(self.transitions.sum(axis=-1), 1.0, atol=1e-8):
            raise ValueError("transitions must hold probabilities P(s'|s,a) >= 0 summing to 1 over s'")
        distribution = self.initial_distribution
        if distribution.shape != (n_states,) or np.any(distribution < 0.0) or not np.isclose(distribution.sum(), 1.0):
            raise ValueError(
                f"initial_distribution must be a probability vector (>= 0, summing to 1) of shape ({n_states},), "
                f"got {distribution}"
            )
        if self.terminal is None:
            self.terminal = np.zeros(n_states, dtype=bool)
        self.terminal = np.asarray(self.terminal, dtype=bool)
        if self.terminal.shape != (n_states,):
            raise ValueError(f"terminal must have shape ({n_states},), got {self.terminal.shape}")
        for state in np.flatnonzero(self.terminal):
            if not (np.all(self.transitions[state, :, state] == 1.0) and np.all(self.rewards[state] == 0.0)):
                raise ValueError(f"terminal state {state} must be absorbing (P(s|s,a) = 1) with zero reward")

    @property
    def n_states(self) -> int:
        """Number of states."""
        return int(self.rewards.shape[0])

    @property
    def n_actions(self) -> int:
        """Number of actions."""
        return int(self.rewards.shape[1])

    def soft_q_values(self, gamma: float, ent_coef: float, reference_policy: Any = None, **kwargs: Any) -> FloatArray:
        """
        :math:`Q^*` of this MDP by :func:`~sb3_softq.tabular.soft_value_iteration` (same arguments).

        :return: :math:`Q^*`, ``[n_states, n_actions]``
        """
        return soft_value_iteration(self.transitions, self.rewards, gamma, ent_coef, reference_policy, **kwargs)


def random_mdp(n_states: int, n_actions: int, seed: int = 0, branching: int = 2, reward_scale: float = 1.0) -> TabularMDP:
    """
    A random MDP: each :math:`(s, a)` leads to ``branching`` distinct next states with Dirichlet(1) probabilities,
    rewards :math:`r(s,a) \\sim \\mathcal{N}(0, \\text{reward\\_scale}^2)`, a uniform start distribution (every state
    is a start state) and no terminal state.

    :param n_states: number of states (>= 1)
    :param n_actions: number of actions (>= 1)
    :param seed: seed of the generator
    :param branching: number of possible next states of each state-action pair, in ``[1, n_states]``
    :param reward_scale: standard deviation of the rewards
    :return: the MDP
    """
    n_states = check_number("n_states", n_states, 1, integer=True)
    n_actions = check_number("n_actions", n_actions, 1, integer=True)
    branching = check_number("branching", branching, 1, n_states, integer=True)
    rng = np.random.default_rng(seed)
    transitions = np.zeros((n_states, n_actions, n_states))
    for state in range(n_states):
        for action in range(n_actions):
            next_states = rng.choice(n_states, size=branching, replace=False)
            transitions[state, action, next_states] = rng.dirichlet(np.ones(branching))
    rewards = reward_scale * rng.standard_normal((n_states, n_actions))
    return TabularMDP(transitions, rewards, np.full(n_states, 1.0 / n_states))


class TabularMDPEnv(gym.Env[Any, np.int64]):
    """
    A gymnasium environment sampling a :class:`TabularMDP`: start state from ``initial_distribution``, next state from
    ``transitions``, reward ``rewards[s, a]``; ``terminated`` on entering a terminal state, ``truncated`` (and not
    ``terminated``) after ``max_episode_steps`` steps.

    :param mdp: the MDP
    :param max_episode_steps: time limit (>= 1)
    :param one_hot: observe one-hot vectors (``Box(0, 1, (n_states,), float32)``) instead of ``Discrete(n_states)``
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, mdp: TabularMDP, max_episode_steps: int = 100, one_hot: bool = False) -> None:
        max_episode_steps = check_number("max_episode_steps", max_episode_steps, 1, integer=True)
        self.mdp = mdp
        self.max_episode_steps = max_episode_steps
        self.one_hot = one_hot
        self.observation_space: spaces.Space[Any] = (
            spaces.Box(0.0, 1.0, (mdp.n_states,), np.float32) if one_hot else spaces.Discrete(mdp.n_states)
        )
        self.action_space = spaces.Discrete(mdp.n_actions)
        self._cumulative_transitions = np.cumsum(mdp.transitions, axis=-1)
        self.state = 0
        self._elapsed_steps = 0

    def _observation(self) -> Any:
        if self.one_hot:
            obs = np.zeros(self.mdp.n_states, dtype=np.float32)
            obs[self.state] = 1.0
            return obs
        return int(self.state)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """
        Start an episode in a state drawn from ``initial_distribution``.

        :param seed: seed of the environment's random generator
        :param options: unused
        :return: the first observation and ``{"state": s}``
        """
        super().reset(seed=seed)
        self.state = int(self.np_random.choice(self.mdp.n_states, p=self.mdp.initial_distribution))
        self._elapsed_steps = 0
        return self._observation(), {"state": self.state}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """
        Take ``action``: reward ``rewards[s, a]``, next state drawn from ``transitions[s, a]``.

        :param action: the action
        :return: observation, reward, terminated (a terminal state was entered), truncated (time limit), info
        """
        action = int(action)
        reward = float(self.mdp.rewards[self.state, action])
        cumulative = self._cumulative_transitions[self.state, action]
        next_state = np.searchsorted(cumulative, self.np_random.random() * cumulative[-1], side="right")
        self.state = min(int(next_state), self.mdp.n_states - 1)
        self._elapsed_steps += 1
        assert self.mdp.terminal is not None
        terminated = bool(self.mdp.terminal[self.state])
        truncated = not terminated and self._elapsed_steps >= self.max_episode_steps
        return self._observation(), reward, terminated, truncated, {"state": self.state}


def frozen_lake_model(env: gym.Env) -> TabularMDP:
    """
    The exact model of a gymnasium toy-text environment (FrozenLake, CliffWalking, Taxi: any environment whose
    ``env.unwrapped.P[s][a]`` lists ``(probability, next_state, reward, terminated)``).

    Expected rewards :math:`r(s,a) = \\sum_{s'} P(s'|s,a)\\, r(s,a,s')`; states entered with ``terminated=True``
    (FrozenLake's holes and goal, CliffWalking's goal) are made absorbing with zero reward, so their soft value is 0,
    which is what a learner bootstrapping with ``(1 - terminated)`` sees. Where termination depends on the transition
    rather than on the state entered (Taxi's drop-off), terminating transitions lead instead to one extra absorbing
    state, index ``n_states``: compare ``Q*[:n_states]`` with a learner's table then.

    :param env: the environment (wrappers are looked through)
    :return: the MDP, with ``terminal`` set
    """
    unwrapped = env.unwrapped
    model = getattr(unwrapped, "P", None)
    if model is None or not isinstance(env.observation_space, spaces.Discrete):
        raise ValueError(f"env must be a toy-text environment with a model `P` and Discrete observations, got {env}")
    n_states, n_actions = int(env.observation_space.n), int(unwrapped.action_space.n)  # type: ignore[attr-defined]
    entries = [
        (state, action, float(probability), int(next_state), float(reward), bool(terminated))
        for state in range(n_states)
        for action in range(n_actions)
        for probability, next_state, reward, terminated in model[state][action]
    ]
    terminal = np.zeros(n_states + 1, dtype=bool)
    continuing = np.zeros(n_states + 1, dtype=bool)
    for *_, next_state, _, terminated in entries:
        (terminal if terminated else continuing)[next_state] = True
    # Episodes end on entering given states (FrozenLake, CliffWalking): make those absorbing. Otherwise (Taxi, where
    # a drop-off ends the episode), send terminating transitions to one extra absorbing state, index n_states.
    extra = bool(np.any(terminal & continuing))
    size = n_states + int(extra)
    transitions = np.zeros((size, n_actions, size))
    rewards = np.zeros((size, n_actions))
    for state, action, probability, next_state, reward, terminated in entries:
        transitions[state, action, n_states if extra and terminated else next_state] += probability
        rewards[state, action] += probability * reward
    terminal = np.eye(size, dtype=bool)[n_states] if extra else terminal[:n_states]
    for end_state in np.flatnonzero(terminal):
        transitions[end_state] = np.eye(size)[end_state]
        rewards[end_state] = 0.0
    initial = np.zeros(size)
    initial[:n_states] = getattr(unwrapped, "initial_state_distrib", np.eye(n_states)[0])
    return TabularMDP(transitions, rewards, initial, terminal)
