"""
rl-zoo3 integration: ``python -m sb3_softq.zoo train --algo softq_lambda --env CartPole-v1``.

Needs the ``zoo`` extra (``pip install sb3_softq[zoo]``).
"""

from sb3_softq.zoo.cli import minimal_replay_buffer
from sb3_softq.zoo.hyperparams import load_hyperparams
from sb3_softq.zoo.minatar import register_minatar_envs
from sb3_softq.zoo.registration import ZOO_ALGOS, hyperparams_path, register

__all__ = ["ZOO_ALGOS", "hyperparams_path", "load_hyperparams", "minimal_replay_buffer", "register"]

# Like rl-zoo3's `import_envs` for the environment packages it knows: MinAtar's games, when MinAtar is installed
register_minatar_envs()
