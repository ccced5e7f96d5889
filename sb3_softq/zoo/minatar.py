"""
MinAtar's environments in rl-zoo3: ``python -m sb3_softq.zoo train --algo softq_lambda --env MinAtar/Breakout-v1``.

Needs the ``minatar`` extra (``pip install sb3_softq[minatar]``); without MinAtar installed nothing is registered.
"""

import gymnasium as gym

#: The id that tells whether MinAtar's environments are registered already (MinAtar registers them all together)
_PROBE_ID = "MinAtar/Breakout-v1"


def register_minatar_envs() -> bool:
    """
    Register MinAtar's Gymnasium environments (``MinAtar/<Game>-v0`` with all 6 actions, ``MinAtar/<Game>-v1`` with
    each game's minimal action set) when MinAtar is installed; idempotent.

    :return: whether MinAtar's environments are registered
    """
    if _PROBE_ID in gym.registry:
        return True
    try:
        from minatar.gym import register_envs
    except ImportError:
        return False
    register_envs()
    return True
