"""
Long learning checks (``pytest -m slow``): the shipped rl-zoo3 hyperparameters solve the environments, and the
constructor's defaults learn CartPole-v1, Acrobot-v1 and LunarLander-v3.

"Solved within N steps" means a greedy evaluation (SB3's ``EvalCallback``, 10 episodes every 2,500 steps) reached
the threshold at some point during the first N environment steps.
"""

from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import torch as th
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

from sb3_softq.zoo import ZOO_ALGOS, load_hyperparams

pytestmark = pytest.mark.slow


def solved_within(algo: str, env_id: str, threshold: float, budget: int | None, seed: int) -> bool:
    """Whether a greedy evaluation reaches ``threshold``: the rl-zoo3 entry, or the defaults for ``<algo>:defaults``."""
    th.set_num_threads(1)
    name, _, variant = algo.partition(":")
    if variant == "defaults":
        assert budget is not None, "the constructor's defaults have no budget"
        policy, kwargs, n_timesteps = "MlpPolicy", {}, budget
    else:
        policy, kwargs, n_timesteps = load_hyperparams(algo, env_id)
    model = ZOO_ALGOS[name](policy, make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, **kwargs)
    stop = StopTrainingOnRewardThreshold(reward_threshold=threshold)
    evaluation = EvalCallback(
        make_vec_env(env_id, n_envs=1, seed=seed + 10_000), eval_freq=2_500, n_eval_episodes=10, callback_on_new_best=stop
    )
    model.learn(budget or n_timesteps, callback=evaluation)
    return evaluation.best_mean_reward >= threshold


def over_seeds(function: Callable[..., float], seeds: list[int], *args: Any) -> list[float]:
    """``function(*args, seed)`` for every seed, two processes at a time."""
    with ProcessPoolExecutor(max_workers=2) as pool:
        return list(pool.map(function, *([arg] * len(seeds) for arg in args), seeds))


def count_solved(algo: str, env_id: str, seeds: list[int], threshold: float, budget: int | None = None) -> int:
    return sum(over_seeds(solved_within, seeds, algo, env_id, threshold, budget))


@pytest.mark.parametrize("algo", ["softq", "softq_lambda"])
def test_cartpole(algo: str) -> None:
    """Mean evaluation return >= 475 on CartPole-v1 within 50k steps, for at least 4 of 5 seeds."""
    assert count_solved(algo, "CartPole-v1", seeds=list(range(5)), threshold=475, budget=50_000) >= 4


def test_acrobot_softq_lambda() -> None:
    """
    SoftQLambda's Acrobot-v1 entry reaches -100 within 15,000 steps, for 2 of 2 seeds: sooner than DQN with
    ``n_steps=3``, which the entry was re-checked against (docs, "Tuning studies": every held-out seed at -100 after
    10,000 steps, DQN with ``n_steps=3`` after 15,000).
    """
    assert count_solved("softq_lambda", "Acrobot-v1", seeds=[0, 1], threshold=-100, budget=15_000) == 2


def test_lunar_lander_softq_lambda() -> None:
    """
    SoftQLambda (tree backup, Munchausen term) learns LunarLander-v3 within its rl-zoo3 budget (1e5 steps), for 2 of
    2 seeds: an evaluation reaches a mean return of 100 (early evaluations are negative: the lander crashes or hovers).

    The solve threshold (200) is not asserted: with the entry, 3 of 5 seeds of
    ``benchmarks/results/learning_LunarLander-v3`` (evaluation every 1e4 steps over 5 episodes) reach it within the
    budget, at 50,000-70,000 steps; seeds 0 and 1 first reach 100 after 20,000 and 40,000 steps there.
    """
    assert count_solved("softq_lambda", "LunarLander-v3", seeds=[0, 1], threshold=100) == 2


def final_return_with_defaults(env_id: str, budget: int, seed: int) -> float:
    """The greedy return (10 episodes) of ``SoftQLambda("MlpPolicy", env_id, seed=seed)`` after ``budget`` steps."""
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_softq import SoftQLambda

    th.set_num_threads(1)
    model = SoftQLambda("MlpPolicy", env_id, seed=seed).learn(budget)
    mean_return, _ = evaluate_policy(model, make_vec_env(env_id, n_envs=1, seed=seed + 10_000), n_eval_episodes=10)
    return float(mean_return)


def mean_final_return_with_defaults(env_id: str, seeds: list[int], budget: int) -> float:
    return sum(over_seeds(final_return_with_defaults, seeds, env_id, budget)) / len(seeds)


def test_defaults_learn_cartpole() -> None:
    """``SoftQLambda("MlpPolicy", "CartPole-v1")`` with nothing else set reaches 475 within 50k steps on 4 of 5 seeds."""
    assert count_solved("softq_lambda:defaults", "CartPole-v1", seeds=list(range(5)), threshold=475, budget=50_000) >= 4


def test_defaults_learn_acrobot() -> None:
    """The defaults end above -100 on Acrobot-v1 after 100k steps (mean final greedy return of 4 seeds)."""
    assert mean_final_return_with_defaults("Acrobot-v1", seeds=[0, 1, 2, 3], budget=100_000) > -100


def test_defaults_learn_lunar_lander() -> None:
    """The defaults learn LunarLander-v3: mean final greedy return of 2 seeds >= 100 after 200k steps."""
    assert mean_final_return_with_defaults("LunarLander-v3", seeds=[0, 1], budget=200_000) >= 100
