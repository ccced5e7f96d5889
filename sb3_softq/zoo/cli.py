"""
Command line entry point: ``python -m sb3_softq.zoo <command> [rl-zoo3 flags]`` (or ``sb3-softq <command> ...``).

It registers SoftQ and SoftQLambda in rl-zoo3 (see :func:`sb3_softq.zoo.register`) and then runs rl-zoo3's own
script for ``<command>``, with rl-zoo3's flags unchanged.
"""

import contextlib
import importlib
import json
import runpy
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from typing import Any

from rl_zoo3.utils import ALGOS
from stable_baselines3.common.base_class import BaseAlgorithm

from sb3_softq.zoo.registration import ZOO_ALGOS, register


def _train() -> None:
    from rl_zoo3.train import train

    train()


def _enjoy() -> None:
    from rl_zoo3.enjoy import enjoy

    with minimal_replay_buffer():
        enjoy()


def _plot_train() -> None:
    from rl_zoo3.plots import plot_train

    plot_train()


def _plot_from_file() -> None:
    from rl_zoo3.plots import plot_from_file

    plot_from_file()


def _all_plots() -> None:
    from rl_zoo3.plots import all_plots

    all_plots()


def _run_script(module: str) -> Callable[[], None]:
    """
    :param module: an rl-zoo3 module that is a script (its code runs under ``if __name__ == "__main__"``)
    :return: a function running it in this process
    """

    def run() -> None:
        with minimal_replay_buffer():
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    return run


def _push_to_hub() -> None:
    # rl-zoo3 2.9 imports ``generate_metadata`` from huggingface_sb3, which sb3-team-hf-integration 3.2 renamed
    # ``_generate_metadata`` (same arguments and use): without the old name the script fails on import.
    # The module, not the function of the same name that the package's namespace holds
    hf_push_to_hub = importlib.import_module("huggingface_sb3.push_to_hub")
    if not hasattr(hf_push_to_hub, "generate_metadata"):
        hf_push_to_hub.generate_metadata = hf_push_to_hub._generate_metadata  # type: ignore[attr-defined]
    _run_script("rl_zoo3.push_to_hub")()


def _record_training() -> None:
    # ``record_training`` records each model with ``subprocess.call(["python", "-m", "rl_zoo3.record_video", ...])``,
    # a fresh interpreter in which our algorithms are not registered: send those calls through this entry point.
    original_call = subprocess.call

    def call(popenargs: Any, *args: Any, **kwargs: Any) -> int:
        if isinstance(popenargs, list) and popenargs[1:3] == ["-m", "rl_zoo3.record_video"]:
            popenargs = [sys.executable, "-m", "sb3_softq.zoo", "record_video", *popenargs[3:]]
        return original_call(popenargs, *args, **kwargs)

    subprocess.call = call  # type: ignore[assignment]
    try:
        runpy.run_module("rl_zoo3.record_training", run_name="__main__", alter_sys=True)
    finally:
        subprocess.call = original_call


#: The commands, as rl-zoo3 names them (``rl_zoo3 <command>`` or ``python -m rl_zoo3.<command>``)
COMMANDS: dict[str, Callable[[], None]] = {
    "train": _train,
    "enjoy": _enjoy,
    "record_video": _run_script("rl_zoo3.record_video"),
    "record_training": _record_training,
    "plot_train": _plot_train,
    "plot_from_file": _plot_from_file,
    "all_plots": _all_plots,
    "push_to_hub": _push_to_hub,
    "load_from_hub": _run_script("rl_zoo3.load_from_hub"),
}


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


def _usage() -> str:
    return (
        "usage: python -m sb3_softq.zoo <command> [rl-zoo3 arguments]\n\n"
        "Runs an rl-zoo3 script with the algorithms "
        + ", ".join(ZOO_ALGOS)
        + " registered.\n\ncommands: "
        + ", ".join(COMMANDS)
        + "\n\nexample: python -m sb3_softq.zoo train --algo softq_lambda --env CartPole-v1\n"
        "Use `python -m sb3_softq.zoo <command> --help` for the arguments of a command."
    )


def main(argv: list[str] | None = None) -> None:
    """
    Register our algorithms in rl-zoo3 and run one of its commands.

    :param argv: ``[<command>, <rl-zoo3 arguments>...]``; ``sys.argv[1:]`` when ``None``
    """
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) == 0 or args[0] in ("-h", "--help"):
        print(_usage())
        return
    command, *command_args = args
    if command not in COMMANDS:
        print(_usage(), file=sys.stderr)
        raise SystemExit(f"Unknown command {command!r}, expected one of: {', '.join(COMMANDS)}")

    # Must come before the command builds its ``--algo`` choices from ALGOS
    register()
    # rl-zoo3's scripts parse sys.argv
    sys.argv = [f"sb3_softq.zoo {command}", *command_args]
    COMMANDS[command]()


if __name__ == "__main__":
    main()
