"""
Loading our models for evaluation through rl-zoo3 (``enjoy``, ``record_video``, ``push_to_hub``) with a minimal
replay buffer.
"""

import contextlib
import json
import zipfile
from collections.abc import Iterator
from typing import Any

from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_softq.zoo.registration import ZOO_ALGOS


def _saved_data(path: Any) -> dict[str, Any]:
    """
    :param path: path of a saved model
    :return: the saved attributes that SB3 writes as plain JSON values (``n_envs``, ``buffer_size``, ...); empty when
        the file cannot be read (SB3's ``load`` will report it)
    """
    try:
        path = str(path)
        with zipfile.ZipFile(path if path.endswith(".zip") else f"{path}.zip") as archive:
            data = json.loads(archive.read("data"))
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return {}
    return data if isinstance(data, dict) else {}


def _for_inference(algo_class: type[BaseAlgorithm]) -> type[BaseAlgorithm]:
    """
    A stand-in for ``algo_class`` in ``ALGOS`` whose ``load()`` allocates a minimal replay buffer.

    rl-zoo3's ``enjoy`` / ``record_video`` / ``push_to_hub`` pass ``buffer_size=1`` only to the off-policy
    algorithms they know by name; any other algorithm would allocate its full replay buffer just to be evaluated.
    Two steps per environment is the smallest buffer that every algorithm of this package accepts (a sequence
    buffer needs at least two). The model's ``buffer_size`` attribute keeps the saved value, so that a model saved
    again (``push_to_hub`` does) trains with its own buffer size when loaded later.

    :param algo_class: the algorithm class
    :return: a subclass whose ``load()`` returns a plain ``algo_class`` instance with a minimal buffer
    """

    def load(cls: type[BaseAlgorithm], path: Any, *args: Any, **kwargs: Any) -> BaseAlgorithm:
        env = args[0] if len(args) > 0 else kwargs.get("env")
        saved = _saved_data(path)
        if "buffer_size" in kwargs:  # explicit arguments win
            return algo_class.load(path, *args, **{"optimize_memory_usage": False, **kwargs})
        n_envs = int(getattr(env, "num_envs", 1)) if env is not None else int(saved.get("n_envs", 1))
        model = algo_class.load(path, *args, **{"optimize_memory_usage": False, **kwargs, "buffer_size": 2 * n_envs})
        if isinstance(saved.get("buffer_size"), int):
            model.buffer_size = saved["buffer_size"]  # type: ignore[attr-defined]
        return model

    return type(algo_class.__name__, (algo_class,), {"load": classmethod(load), "__module__": algo_class.__module__})


@contextlib.contextmanager
def minimal_replay_buffer() -> Iterator[None]:
    """
    Within the block, loading one of our algorithms through rl-zoo3's ``ALGOS`` allocates a replay buffer of two steps
    per environment instead of the saved ``buffer_size`` (the model keeps that attribute). rl-zoo3 does this only for
    the off-policy algorithms it knows by name; ``python -m sb3_softq.zoo enjoy`` (and ``record_video``,
    ``push_to_hub``) run inside it. From Python, after :func:`register`::

        with minimal_replay_buffer():
            rl_zoo3.enjoy.enjoy()
    """
    saved = {name: ALGOS[name] for name in ZOO_ALGOS}
    ALGOS.update({name: _for_inference(algo_class) for name, algo_class in ZOO_ALGOS.items()})
    try:
        yield
    finally:
        ALGOS.update(saved)
