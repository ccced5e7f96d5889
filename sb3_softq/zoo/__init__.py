"""
rl-zoo3 integration: ``python -m sb3_softq.zoo train --algo softq_lambda --env CartPole-v1``.

Needs the ``zoo`` extra (``pip install "sb3_softq[zoo]"``). The names below are imported when first used, so that
``python -m sb3_softq.zoo`` can say what to install when the extra is missing.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sb3_softq.zoo.experiment_manager import ExperimentManager
    from sb3_softq.zoo.hyperparams import load_hyperparams
    from sb3_softq.zoo.inference import minimal_replay_buffer
    from sb3_softq.zoo.minatar import register_minatar_envs
    from sb3_softq.zoo.registration import ZOO_ALGOS, hyperparams_path, register

#: Public name -> module defining it
_MODULES = {
    "ExperimentManager": "sb3_softq.zoo.experiment_manager",
    "ZOO_ALGOS": "sb3_softq.zoo.registration",
    "hyperparams_path": "sb3_softq.zoo.registration",
    "load_hyperparams": "sb3_softq.zoo.hyperparams",
    "minimal_replay_buffer": "sb3_softq.zoo.inference",
    "register": "sb3_softq.zoo.registration",
    "register_minatar_envs": "sb3_softq.zoo.minatar",
}

__all__ = [
    "ZOO_ALGOS",
    "ExperimentManager",
    "hyperparams_path",
    "load_hyperparams",
    "minimal_replay_buffer",
    "register",
    "register_minatar_envs",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        module = importlib.import_module(_MODULES[name])
    except ModuleNotFoundError as error:
        from sb3_softq.zoo.cli import ZOO_EXTRA_HINT, ZOO_EXTRA_MODULES

        if (error.name or "").split(".")[0] in ZOO_EXTRA_MODULES:
            raise ModuleNotFoundError(f"sb3_softq.zoo.{name}: {ZOO_EXTRA_HINT}", name=error.name) from error
        raise
    return getattr(module, name)
