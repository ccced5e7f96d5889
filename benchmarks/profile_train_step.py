"""
Where the time of one gradient step goes: SB3's DQN against SoftQ and SoftQLambda, phase by phase, in one run.

Each algorithm is built as in ``bench_speed.py`` (same network, same number of TD targets per gradient step), its
replay buffer is filled, and ``train()`` runs with wall-clock timers around its phases:

- ``sample``: ``replay_buffer.sample()``
- ``target forward`` / ``online forward``: the target and online Q-networks
- ``returns``: ``soft_lambda_returns_with_extras`` (SoftQLambda only; part of the target computation)
- ``backward``, ``clip`` (``clip_grad_norm_``), ``optimizer``: the update
- ``temperature``: the step of a learned temperature (``_update_temperature``: the entropy of the batch's policy and
  the temperature's optimiser step)
- ``other``: the rest of ``train()`` (loss, indexing, one-step targets, logging)

With one PyTorch thread on CPU every operation is synchronous, so the timers measure the phases themselves.
Figures are microseconds per gradient step, the median over ``--repeats`` interleaved runs. On a shared, noisy
machine wall-clock figures move by tens of percent between runs; ``--count-ops`` reports instead the number of
PyTorch (ATen) operations per gradient step in each phase, counted with a ``TorchDispatchMode``, which does not
depend on the machine's load (NumPy work, e.g. most of the replay buffer's sampling, is not counted there).

Usage::

    python benchmarks/profile_train_step.py [--targets 1024] [--sequence-length 16] [--net-arch 64 64]
    python benchmarks/profile_train_step.py --targets 256 --sequence-length 8 --count-ops
"""

import argparse
import contextlib
import functools
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import torch as th
from bench_speed import make_models
from stable_baselines3.common.logger import Logger
from torch.utils._python_dispatch import TorchDispatchMode

import sb3_softq.softq_lambda.softq_lambda as softq_lambda_module

PHASES = ["sample", "target forward", "online forward", "returns", "backward", "clip", "optimizer", "temperature", "other"]


class PhaseTimers:
    """Accumulates wall-clock time per phase; a phase entered inside another one is counted in the outer one."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.current = "other"
        self._depth = 0

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self._depth:
                return function(*args, **kwargs)
            self._depth += 1
            self.current = phase
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[phase] += time.perf_counter() - start
                self.current = "other"
                self._depth -= 1

        return timed


class PhaseOpCounter(TorchDispatchMode):
    """Counts the ATen operations run, by the phase that ``timers`` says is running."""

    def __init__(self, timers: PhaseTimers) -> None:
        super().__init__()
        self.timers = timers
        self.counts: dict[str, int] = defaultdict(int)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.counts[self.timers.current] += 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def timed_module_functions(timers: PhaseTimers) -> Iterator[None]:
    """Time the phases that the algorithms call as module-level functions, restoring them afterwards."""
    originals = (th.Tensor.backward, th.nn.utils.clip_grad_norm_, softq_lambda_module.soft_lambda_returns_with_extras)
    th.Tensor.backward = timers.wrap("backward", originals[0])  # type: ignore[method-assign]
    th.nn.utils.clip_grad_norm_ = timers.wrap("clip", originals[1])
    softq_lambda_module.soft_lambda_returns_with_extras = timers.wrap("returns", originals[2])
    try:
        yield
    finally:
        th.Tensor.backward, th.nn.utils.clip_grad_norm_, softq_lambda_module.soft_lambda_returns_with_extras = originals  # type: ignore[method-assign]


def profile_one(make: Callable[[], Any], gradient_steps: int, count_ops: bool = False) -> dict[str, float]:
    """:return: microseconds (or with ``count_ops``, ATen operations) per gradient step of each phase, and ``total``"""
    model = make()
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(5_000)  # fills the buffer and warms up
    timers = PhaseTimers()
    model.replay_buffer.sample = timers.wrap("sample", model.replay_buffer.sample)
    model.policy.optimizer.step = timers.wrap("optimizer", model.policy.optimizer.step)
    if hasattr(model, "_update_temperature"):
        model._update_temperature = timers.wrap("temperature", model._update_temperature)
    if hasattr(model, "q_net"):  # DQN
        model.q_net.forward = timers.wrap("online forward", model.q_net.forward)
        model.q_net_target.forward = timers.wrap("target forward", model.q_net_target.forward)
    else:
        model.policy.all_q_values = timers.wrap("online forward", model.policy.all_q_values)
        model.policy.target_q_values = timers.wrap("target forward", model.policy.target_q_values)
    with timed_module_functions(timers):
        model.train(gradient_steps=10, batch_size=model.batch_size)
        timers.seconds.clear()
        if count_ops:
            with PhaseOpCounter(timers) as counter:
                model.train(gradient_steps=gradient_steps, batch_size=model.batch_size)
            counts = {phase: counter.counts[phase] / gradient_steps for phase in PHASES}
            counts["total"] = sum(counts.values())
            return counts
        start = time.perf_counter()
        model.train(gradient_steps=gradient_steps, batch_size=model.batch_size)
        total = time.perf_counter() - start
    figures = {phase: 1e6 * timers.seconds[phase] / gradient_steps for phase in PHASES if phase != "other"}
    figures["other"] = 1e6 * total / gradient_steps - sum(figures.values())
    figures["total"] = 1e6 * total / gradient_steps
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", type=int, default=1024, help="TD targets per gradient step (B*T)")
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--net-arch", type=int, nargs="+", default=[64, 64])
    parser.add_argument("--gradient-steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--count-ops", action="store_true", help="count ATen operations per phase instead of timing (one run, 20 steps)"
    )
    args = parser.parse_args()
    th.set_num_threads(1)

    models = make_models("cpu", args.targets, args.sequence_length, args.net_arch)
    names = [
        "DQN",
        "DQN (fused Adam)",
        "SoftQ",
        "SoftQ (auto temperature)",
        "SoftQLambda (tree_backup)",
        "SoftQLambda (tree_backup, auto temperature)",
    ]
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    repeats, gradient_steps = (1, 20) if args.count_ops else (args.repeats, args.gradient_steps)
    for _ in range(repeats):  # interleaved, so that machine noise affects every algorithm alike
        for name in names:
            runs[name].append(profile_one(models[name], gradient_steps, count_ops=args.count_ops))

    print(f"CartPole-v1, net_arch={args.net_arch}, {args.targets} TD targets per gradient step, CPU, torch threads=1, ")
    if args.count_ops:
        print(
            f"torch {th.__version__}; ATen operations per gradient step (TorchDispatchMode), mean of {gradient_steps} steps\n"
        )
    else:
        print(f"torch {th.__version__}; microseconds per gradient step, median of {repeats} interleaved runs\n")
    columns = [*PHASES, "total"]
    print("| algorithm | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for name, figures in runs.items():
        medians = [statistics.median(run[column] for run in figures) for column in columns]
        print(f"| {name} | " + " | ".join(f"{value:.0f}" for value in medians) + " |")


if __name__ == "__main__":
    main()
