"""
SoftQLambda (Soft Q(λ), soft tree backup) on CartPole-v1: train, save, load, evaluate and run the agent.

A short run for the documentation; see ``hyperparams/softq_lambda.yml`` for the full training budget.
"""

import gymnasium as gym
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_softq import SoftQLambda

env = Monitor(gym.make("CartPole-v1"))

model = SoftQLambda(
    "MlpPolicy",
    env,
    learning_rate=2.3e-3,
    batch_size=8,  # sequences: 8 windows x 8 steps = 64 TD targets, as rl-zoo3's DQN batch_size=64
    sequence_length=8,
    trace_lambda=0.9,
    trace="tree_backup",
    buffer_size=100_000,
    learning_starts=500,
    target_update_interval=10,
    train_freq=256,
    gradient_steps=128,
    ent_coef="auto",
    policy_kwargs=dict(net_arch=[256, 256]),
    seed=0,
    verbose=1,
)
model.learn(total_timesteps=3_000, log_interval=10)
model.save("softq_lambda_cartpole")

del model  # remove to demonstrate saving and loading

model = SoftQLambda.load("softq_lambda_cartpole")

mean_reward, std_reward = evaluate_policy(model, env, n_eval_episodes=5, deterministic=True)
print(f"mean reward: {mean_reward:.1f} +/- {std_reward:.1f}")

obs, info = env.reset(seed=0)
for _ in range(500):
    action, _states = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = env.step(action)
    if terminated or truncated:
        obs, info = env.reset()
