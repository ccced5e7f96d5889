"""
KL-regularised fine-tuning from a pretrained prior.

1. Pretrain a PPO agent on CartPole-v1 (a short run: a mediocre but informative policy).
2. Fine-tune with SoftQLambda using the PPO policy as the reference policy: each step is rewarded with
   r_t - tau * KL(pi(.|s_t) || pi_PPO(.|s_t)), and the Boltzmann policy is
   pi_B(a|s) proportional to pi_PPO(a|s) * exp(Q(s, a) / tau): the prior, reweighted by the learned Q-values.
3. Save the fine-tuned model, and load it again: a state-dependent prior is not saved with the model,
   it must be passed again to ``load()``.
"""

import gymnasium as gym
import numpy as np
from stable_baselines3 import PPO
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.monitor import Monitor

from sb3_softq import SoftQLambda

env = Monitor(gym.make("CartPole-v1"))

# 1. The prior: any SB3 model or policy with a categorical action distribution (PPO, A2C, SoftQ, ...)
pretrained = PPO("MlpPolicy", env, n_steps=512, batch_size=64, n_epochs=5, seed=0)
pretrained.learn(total_timesteps=3_072)
prior_reward, _ = evaluate_policy(pretrained, env, n_eval_episodes=5, deterministic=False)
print(f"pretrained PPO (stochastic policy): {prior_reward:.1f}")

# 2. Fine-tuning: a fixed temperature sets how strongly the policy is held close to the prior
#    (larger tau: closer). The first `learning_starts` steps are uniformly random, as in SB3: keep them few.
model = SoftQLambda(
    "MlpPolicy",
    env,
    reference_policy=pretrained,  # frozen: its parameters are not trained further
    ent_coef=1.0,
    learning_rate=1e-3,
    sequence_length=8,
    trace_lambda=0.9,
    batch_size=8,
    learning_starts=100,
    target_update_interval=100,
    policy_kwargs=dict(net_arch=[64, 64]),
    seed=0,
)

model.learn(total_timesteps=2_000)
finetuned_reward, _ = evaluate_policy(model, env, n_eval_episodes=5, deterministic=False)
print(f"fine-tuned SoftQLambda (Boltzmann policy): {finetuned_reward:.1f}")

# 3. Save and load: pass the prior again
model.save("softq_lambda_finetuned")
loaded = SoftQLambda.load("softq_lambda_finetuned", env=env, reference_policy=pretrained)
observations = np.stack([env.reset(seed=seed)[0] for seed in range(5)])
np.testing.assert_array_equal(
    loaded.predict(observations, deterministic=True)[0], model.predict(observations, deterministic=True)[0]
)
