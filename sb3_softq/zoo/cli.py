"""
Command line entry point: ``python -m sb3_softq.zoo <command> [rl-zoo3 flags]`` (or ``sb3-softq <command> ...``).

It registers SoftQ and SoftQLambda in rl-zoo3 (see :func:`sb3_softq.zoo.register`) and then runs rl-zoo3's own
script for ``<command>``, with rl-zoo3's flags unchanged. ``train`` runs with :class:`sb3_softq.zoo.ExperimentManager`
and takes two more flags, ``--heartbeat-interval`` and ``--grace-period`` (distributed tuning).

rl-zoo3 is imported only once a command runs, so that without the ``zoo`` extra the command says what to install.
"""

import argparse
import functools
import importlib
import runpy
import sys
import types
from collections.abc import Callable

#: Top-level modules of the ``zoo`` extra: a command failing to import one of them needs ``pip install "sb3_softq[zoo]"``
ZOO_EXTRA_MODULES = ("rl_zoo3", "optuna", "sb3_contrib", "yaml", "huggingface_sb3", "huggingface_hub", "pandas", "seaborn")
ZOO_EXTRA_HINT = 'the rl-zoo3 integration needs the `zoo` extra: pip install "sb3_softq[zoo]"'


def _train_parser() -> argparse.ArgumentParser:
    """:return: the parser of the flags that ``train`` takes on top of rl-zoo3's"""
    parser = argparse.ArgumentParser(prog="python -m sb3_softq.zoo train", add_help=False, allow_abbrev=False)
    parser.add_argument(
        "--heartbeat-interval",
        type=int,
        default=None,
        help="With -optimize and a database --storage: record each trial's heartbeat every this many seconds, and "
        "mark as failed the running trials of workers that stopped sending theirs (Optuna's RDBStorage heartbeat)",
    )
    parser.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="Seconds without a heartbeat after which a running trial is marked as failed (default: twice "
        "--heartbeat-interval)",
    )
    return parser


def train(heartbeat_interval: int | None = None, grace_period: int | None = None) -> None:
    """
    rl-zoo3's ``train()`` (which reads ``sys.argv``) with :class:`sb3_softq.zoo.ExperimentManager` as its experiment
    manager.

    rl-zoo3 2.9's ``train()`` builds its experiment manager by the global name ``ExperimentManager`` and takes no
    argument for its class: its code runs here with that name bound to ours, in a copy of its module's namespace
    (``rl_zoo3.train`` itself is left unchanged).

    :param heartbeat_interval: see :class:`sb3_softq.zoo.ExperimentManager`
    :param grace_period: see :class:`sb3_softq.zoo.ExperimentManager`
    """
    import rl_zoo3.train

    from sb3_softq.zoo.experiment_manager import ExperimentManager

    manager = functools.partial(ExperimentManager, heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    namespace = {**vars(rl_zoo3.train), "ExperimentManager": manager}
    types.FunctionType(rl_zoo3.train.train.__code__, namespace, "train")()


def _train(args: list[str]) -> None:
    ours, rl_zoo3_args = _train_parser().parse_known_args(args)
    if "-h" in rl_zoo3_args or "--help" in rl_zoo3_args:
        print(_train_parser().format_help().replace("usage:", "flags of sb3_softq.zoo, besides rl-zoo3's:", 1))
    sys.argv[1:] = rl_zoo3_args
    train(heartbeat_interval=ours.heartbeat_interval, grace_period=ours.grace_period)


def _enjoy(args: list[str]) -> None:
    from rl_zoo3.enjoy import enjoy

    from sb3_softq.zoo.inference import minimal_replay_buffer

    with minimal_replay_buffer():
        enjoy()


def _rl_zoo3_function(module: str, name: str) -> Callable[[list[str]], None]:
    """:return: a command running the function ``name`` of ``module`` (which reads ``sys.argv``)"""

    def run(args: list[str]) -> None:
        getattr(importlib.import_module(module), name)()

    return run


def _rl_zoo3_script(module: str) -> Callable[[list[str]], None]:
    """
    :param module: an rl-zoo3 module that is a script (its code runs under ``if __name__ == "__main__"``)
    :return: a command running it in this process, loading our models with a minimal replay buffer
    """

    def run(args: list[str]) -> None:
        from sb3_softq.zoo.inference import minimal_replay_buffer

        with minimal_replay_buffer():
            runpy.run_module(module, run_name="__main__", alter_sys=True)

    return run


def _push_to_hub(args: list[str]) -> None:
    hf_push_to_hub = importlib.import_module("huggingface_sb3.push_to_hub")
    if not hasattr(hf_push_to_hub, "generate_metadata"):
        # rl-zoo3 2.9's script imports `generate_metadata`, which sb3-team-hf-integration (the huggingface_sb3
        # module) 3.2 renamed `_generate_metadata`: the script cannot be imported with that version
        raise SystemExit(
            "sb3_softq.zoo push_to_hub: rl-zoo3's push_to_hub script imports `generate_metadata` from huggingface_sb3, "
            "which the installed sb3-team-hf-integration (3.2 or later) names `_generate_metadata`; install an "
            'earlier version: pip install "sb3-team-hf-integration<3.2"'
        )
    _rl_zoo3_script("rl_zoo3.push_to_hub")(args)


def _record_training(args: list[str]) -> None:
    from sb3_softq.zoo.record_training import record_training

    record_training()


#: The commands, as rl-zoo3 names them (``rl_zoo3 <command>`` or ``python -m rl_zoo3.<command>``)
COMMANDS: dict[str, Callable[[list[str]], None]] = {
    "train": _train,
    "enjoy": _enjoy,
    "record_video": _rl_zoo3_script("rl_zoo3.record_video"),
    "record_training": _record_training,
    "plot_train": _rl_zoo3_function("rl_zoo3.plots", "plot_train"),
    "plot_from_file": _rl_zoo3_function("rl_zoo3.plots", "plot_from_file"),
    "all_plots": _rl_zoo3_function("rl_zoo3.plots", "all_plots"),
    "push_to_hub": _push_to_hub,
    "load_from_hub": _rl_zoo3_script("rl_zoo3.load_from_hub"),
}

_ALGO_NAMES = ("softq", "softq_lambda")


def _usage() -> str:
    return (
        "usage: python -m sb3_softq.zoo <command> [rl-zoo3 arguments]\n\n"
        "Runs an rl-zoo3 script with the algorithms "
        + ", ".join(_ALGO_NAMES)
        + " registered.\n\ncommands: "
        + ", ".join(COMMANDS)
        + "\n\nexample: python -m sb3_softq.zoo train --algo softq_lambda --env CartPole-v1\n"
        "Use `python -m sb3_softq.zoo <command> --help` for the arguments of a command."
    )


def _is_zoo_extra(error: ModuleNotFoundError) -> bool:
    """:return: whether ``error`` is a module of the ``zoo`` extra that is not installed"""
    return (error.name or "").split(".")[0] in ZOO_EXTRA_MODULES


def main(argv: list[str] | None = None) -> None:
    """
    Register our algorithms in rl-zoo3 and run one of its commands.

    Exits with a message, and without a traceback, when the ``zoo`` extra is missing (status 1) or when an argument
    or the hyperparameter file cannot be used (status 2, as for argparse's errors).

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

    prog = f"sb3_softq.zoo {command}"
    try:
        from sb3_softq.zoo.experiment_manager import ConfigurationError
        from sb3_softq.zoo.registration import register
    except ModuleNotFoundError as error:
        if _is_zoo_extra(error):
            raise SystemExit(f"{prog}: {ZOO_EXTRA_HINT} ({error.name} is not installed)") from None
        raise

    # Must come before the command builds its ``--algo`` choices from ALGOS
    register()
    # rl-zoo3's scripts parse sys.argv
    sys.argv = [prog, *command_args]
    try:
        COMMANDS[command](command_args)
    except ConfigurationError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    except ModuleNotFoundError as error:
        if _is_zoo_extra(error):
            raise SystemExit(f"{prog}: {ZOO_EXTRA_HINT} ({error.name} is not installed)") from None
        raise


if __name__ == "__main__":
    main()
