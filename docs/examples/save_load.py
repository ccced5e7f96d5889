"""
Save and load a SoftQLambda model and its sequence replay buffer, then continue training.
"""

import numpy as np
from stable_baselines3.common.envs import IdentityEnv

from sb3_softq import SoftQLambda

env = IdentityEnv(4)
model = SoftQLambda(
    "MlpPolicy",
    env,
    ent_coef="auto",
    reference_policy=[0.4, 0.3, 0.2, 0.1],  # a fixed prior is saved with the model
    learning_starts=100,
    buffer_size=1_000,
    batch_size=16,
    policy_kwargs=dict(net_arch=[32]),
    seed=0,
)
model.learn(total_timesteps=500)

observations = np.arange(4)
actions, _ = model.predict(observations, deterministic=True)

# The model (parameters, optimiser states, temperature), without the replay buffer
model.save("softq_lambda_identity")
# The replay buffer separately (a pickle)
model.save_replay_buffer("softq_lambda_identity_buffer")
n_stored = model.replay_buffer.size()
del model

model = SoftQLambda.load("softq_lambda_identity", env=env, device="cpu")
model.load_replay_buffer("softq_lambda_identity_buffer")
assert model.replay_buffer.size() == n_stored
np.testing.assert_array_equal(model.predict(observations, deterministic=True)[0], actions)

# Continue training: the step counter, schedules and logs carry on
model.learn(total_timesteps=300, reset_num_timesteps=False)
print(f"num_timesteps = {model.num_timesteps}, temperature = {model.policy.ent_coef.item():.3f}")
