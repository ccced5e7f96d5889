"""
Tabular Soft Q(λ) on FrozenLake: learn off-policy from a uniformly random behaviour policy with soft tree-backup
eligibility traces, compare with the soft-optimal Q* from soft value iteration, and plot the TD-error signal.

Usage: python tabular_frozenlake.py [--timesteps 30000] [--output tabular_frozenlake_td_errors.png]
"""

import argparse

import gymnasium as gym
import matplotlib

matplotlib.use("Agg")  # render to a file, no display needed
import matplotlib.pyplot as plt
import numpy as np

from sb3_softq.tabular import TabularSoftQLambda, frozen_lake_model


def main(timesteps: int = 30_000, output: str = "tabular_frozenlake_td_errors.png") -> float:
    gamma, ent_coef = 0.9, 0.05
    env = gym.make("FrozenLake-v1", is_slippery=False)
    model = TabularSoftQLambda(
        env,
        ent_coef=ent_coef,
        gamma=gamma,
        learning_rate=lambda progress_remaining: 0.5 / (1 + 10 * (1 - progress_remaining)),
        algorithm="lambda",
        trace="tree_backup",
        trace_lambda=0.9,
        behaviour_policy="uniform",  # off-policy: the traces are cut by pi_B, no importance ratios needed
        seed=0,
    )
    model.learn(total_timesteps=timesteps)

    # Soft-optimal action values of the exact model (holes and goal absorbing, value 0)
    q_star = frozen_lake_model(env).soft_q_values(gamma=gamma, ent_coef=ent_coef)
    error = float(np.abs(model.q_table - q_star).max())
    print(f"max |Q - Q*| = {error:.4f} after {timesteps} steps, {model.num_episodes} episodes")
    print("greedy policy (0=left, 1=down, 2=right, 3=up):")
    print(model.q_table.argmax(axis=1).reshape(4, 4))

    # The TD error delta_t = r_t + gamma V(s_{t+1}) - Q(s_t, a_t) of every step, and its episode index
    td_errors, episodes = model.td_errors, model.td_episode_index
    last_steps = np.flatnonzero(np.diff(episodes) != 0)  # the last step of every finished episode
    rewarded = last_steps[model.episode_returns[episodes[last_steps]] > 0]  # ... of those that reached the goal
    window = 500
    running_abs = np.convolve(np.abs(td_errors), np.ones(window) / window, mode="valid")

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), constrained_layout=True)
    top.plot(episodes[rewarded], td_errors[rewarded], ".", markersize=4)
    top.set(xlabel="episode", ylabel=r"$\delta_t$ at the goal", title="TD error when the reward arrives")
    bottom.plot(np.arange(window - 1, len(td_errors)), running_abs)
    bottom.set(xlabel="step", ylabel=rf"mean $|\delta_t|$ ({window} steps)", yscale="log", title="TD-error signal")
    fig.savefig(output, dpi=100)
    print(f"saved {output}")
    return error


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1] if __doc__ else None)
    parser.add_argument("--timesteps", type=int, default=30_000)
    parser.add_argument("--output", default="tabular_frozenlake_td_errors.png")
    args = parser.parse_args()
    main(args.timesteps, args.output)
