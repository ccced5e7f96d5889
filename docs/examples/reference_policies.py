"""
The reference policy of the KL regulariser: uniform (the default), a fixed vector of action probabilities,
or a state-dependent prior given as a callable returning log-probabilities.
"""

import gymnasium as gym
import torch as th

from sb3_softq import SoftQ

env = gym.make("CartPole-v1")
kwargs = dict(learning_starts=100, buffer_size=1_000, batch_size=32, policy_kwargs=dict(net_arch=[32]), seed=0)

# Uniform prior: maximum-entropy RL (KL to uniform = log|A| - entropy)
uniform = SoftQ("MlpPolicy", env, ent_coef=0.1, **kwargs)

# A fixed prior over the two actions (push left, push right)
biased = SoftQ("MlpPolicy", env, ent_coef=0.1, reference_policy=[0.7, 0.3], **kwargs)


# A state-dependent prior: push in the direction the pole is falling (observation[2] is the pole angle).
# It receives the observation tensor [batch, 4] and returns normalised log-probabilities [batch, 2].
def lean_prior(obs: th.Tensor) -> th.Tensor:
    logits = th.stack([-5.0 * obs[:, 2], 5.0 * obs[:, 2]], dim=1)
    return th.log_softmax(logits, dim=1)


state_dependent = SoftQ("MlpPolicy", env, ent_coef=0.1, reference_policy=lean_prior, **kwargs)

for name, model in [("uniform", uniform), ("vector", biased), ("callable", state_dependent)]:
    model.learn(total_timesteps=500)
    obs_tensor, _ = model.policy.obs_to_tensor(env.reset(seed=0)[0])
    probs = model.policy.action_log_probs(obs_tensor).exp()
    print(f"{name:>8}: pi_B(.|s0) = {probs.detach().numpy().round(3)}")

# The callable is not saved with the model: pass it again when loading
state_dependent.save("softq_lean_prior")
loaded = SoftQ.load("softq_lean_prior", reference_policy=lean_prior)
