"""
Long learning checks (``pytest -m slow``): the shipped rl-zoo3 hyperparameters solve the environments.

"Solved within N steps" means a greedy evaluation (SB3's ``EvalCallback``, 10 episodes every 2,500 steps) reached
the threshold at some point during the first N environment steps.
"""

from concurrent.futures import ProcessPoolExecutor

import pytest
import torch as th
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold
from stable_baselines3.common.env_util import make_vec_env

from sb3_softq.zoo import ZOO_ALGOS, load_hyperparams

pytestmark = pytest.mark.slow


def solved_within(algo: str, env_id: str, seed: int, threshold: float, budget: int | None = None) -> bool:
    th.set_num_threads(1)
    policy, kwargs, n_timesteps = load_hyperparams(algo, env_id)
    model = ZOO_ALGOS[algo](policy, make_vec_env(env_id, n_envs=1, seed=seed), seed=seed, **kwargs)
    stop = StopTrainingOnRewardThreshold(reward_threshold=threshold)
    evaluation = EvalCallback(
        make_vec_env(env_id, n_envs=1, seed=seed + 10_000), eval_freq=2_500, n_eval_episodes=10, callback_on_new_best=stop
    )
    model.learn(budget or n_timesteps, callback=evaluation)
    return evaluation.best_mean_reward >= threshold


def count_solved(algo: str, env_id: str, seeds: list[int], threshold: float, budget: int | None = None) -> int:
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = pool.map(solved_within, *zip(*[(algo, env_id, seed, threshold, budget) for seed in seeds], strict=True))
        return sum(results)


@pytest.mark.parametrize("algo", ["softq", "softq_lambda"])
def test_cartpole(algo: str) -> None:
    """Mean evaluation return >= 475 on CartPole-v1 within 50k steps, for at least 4 of 5 seeds."""
    assert count_solved(algo, "CartPole-v1", seeds=list(range(5)), threshold=475, budget=50_000) >= 4


def test_lunar_lander_softq_lambda() -> None:
    """
    SoftQLambda (tree backup) learns LunarLander-v3 within its rl-zoo3 budget (1e5 steps), for 2 of 2 seeds: an
    evaluation reaches a mean return of 100 (early evaluations are negative: the lander crashes or hovers).

    The solve threshold (200) is not asserted: with the tuned entry, 3 of 5 seeds of
    ``benchmarks/results/learning_LunarLander-v3`` (evaluation every 1e4 steps over 5 episodes) reach it within the
    budget, at 80,000-90,000 steps; seeds 0 and 1 first reach 100 after 30,000 and 80,000 steps there.
    """
    assert count_solved("softq_lambda", "LunarLander-v3", seeds=[0, 1], threshold=100) == 2
