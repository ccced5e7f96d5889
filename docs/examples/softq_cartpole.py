"""
SoftQ (one-step soft Q-learning) on CartPole-v1: train, save, load, evaluate and run the agent.

A short run for the documentation; see ``hyperparams/softq.yml`` for the full training budget.
"""

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_softq import SoftQ

env = Monitor(gym.make("CartPole-v1"))

model = SoftQ(
    "MlpPolicy",
    env,
    learning_rate=4.8e-4,
    batch_size=256,
    buffer_size=100_000,
    learning_starts=500,
    gamma=0.994,
    target_update_interval=124,
    train_freq=4,
    gradient_steps=2,
    n_critics=2,  # targets from the minimum of two target critics
    ent_coef="auto",  # temperature learned towards target_entropy
    target_entropy=0.414,
    policy_kwargs=dict(net_arch=[256, 256]),
    seed=0,
    verbose=1,
)
model.learn(total_timesteps=3_000, log_interval=10)
model.save("softq_cartpole")

del model  # remove to demonstrate saving and loading

model = SoftQ.load("softq_cartpole")

mean_reward, std_reward = evaluate_policy(model, env, n_eval_episodes=5, deterministic=True)
print(f"mean reward: {mean_reward:.1f} +/- {std_reward:.1f}")

obs, info = env.reset(seed=0)
for _ in range(500):
    # deterministic=True: argmax Q; deterministic=False samples the Boltzmann policy
    action, _states = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = env.step(action)
    if terminated or truncated:
        obs, info = env.reset()
