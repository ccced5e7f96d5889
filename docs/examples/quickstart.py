"""
Quickstart: train Soft Q(λ) on CartPole, save it, load it back and run the trained agent.

The budget is kept small so that the script runs in seconds; ``n_timesteps`` in ``hyperparams/softq_lambda.yml``
(5e4 for CartPole-v1) is what a full training run uses.
"""

import gymnasium as gym

from sb3_softq import SoftQLambda

env = gym.make("CartPole-v1")

model = SoftQLambda(
    "MlpPolicy",
    env,
    sequence_length=8,  # windows of 8 consecutive steps
    trace_lambda=0.9,
    trace="tree_backup",  # Soft Tree Backup: off-policy, no behaviour probabilities needed
    ent_coef="auto",  # learn the temperature
    learning_rate=2.3e-3,
    learning_starts=500,
    batch_size=8,  # 8 windows of 8 steps: up to 64 TD targets per gradient step
    train_freq=256,
    gradient_steps=128,
    target_update_interval=10,
    policy_kwargs=dict(net_arch=[64, 64]),
    seed=0,
    verbose=1,
)
model.learn(total_timesteps=3_000, log_interval=10)
model.save("softq_lambda_cartpole")

del model  # remove to demonstrate saving and loading

model = SoftQLambda.load("softq_lambda_cartpole")

obs, info = env.reset(seed=0)
episode_return = 0.0
for _ in range(500):
    action, _states = model.predict(obs, deterministic=True)
    obs, reward, terminated, truncated, info = env.step(action)
    episode_return += float(reward)
    if terminated or truncated:
        break
print(f"episode return: {episode_return}")
