"""
Training speed of SoftQ and SoftQLambda against SB3's DQN, measured in one run on the same machine.

What is measured:

1. Training throughput (environment steps per second of ``learn()``), same network, batch size, ``train_freq`` and
   ``gradient_steps`` for every algorithm (SoftQLambda's batch is ``batch_size / sequence_length`` sequences, so that
   each gradient step regresses the same number of TD targets).
2. Time per gradient step per TD target: ``train()`` on a filled replay buffer, DQN with a batch of ``B*T``
   transitions against SoftQLambda with ``B`` windows of ``T`` steps (``B*T`` targets), for every trace; and the
   replay buffer's ``sample()`` alone with the same batches (SB3's ``ReplayBuffer`` for DQN and SoftQ, the
   ``SequenceReplayBuffer`` for SoftQLambda), per sampled transition.

SoftQ and SoftQLambda run Adam fused by default (:func:`sb3_softq.softq.policies.default_optimizer_kwargs`); SB3's
DQN does not. The row "DQN (fused Adam)" is DQN with the same optimizer, which tells the two gains apart.

Usage::

    python benchmarks/bench_speed.py [--device cpu] [--repeats 3] [--steps 20000] [--json results.json]
    # SoftQLambda with its defaults (tree backup, learned temperature) and SoftQ against DQN, 256 and 1,024 targets:
    python benchmarks/bench_speed.py --targets 256 --algorithms SoftQ "SoftQLambda (tree_backup, auto temperature)"
    python benchmarks/bench_speed.py --targets 1024 --sequence-length 16 \\
        --algorithms SoftQ "SoftQLambda (tree_backup, auto temperature)"
"""

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import stable_baselines3
import torch as th
from stable_baselines3 import DQN
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.logger import Logger

import sb3_softq
from sb3_softq import SoftQ, SoftQLambda

ENV_ID = "CartPole-v1"


def common_kwargs(device: str, batch_size: int, net_arch: list[int]) -> dict[str, Any]:
    return dict(
        learning_rate=1e-3,
        buffer_size=50_000,
        learning_starts=1_000,
        batch_size=batch_size,
        train_freq=4,
        gradient_steps=1,
        target_update_interval=500,
        policy_kwargs=dict(net_arch=net_arch),
        device=device,
        seed=0,
    )


def make_models(
    device: str, targets_per_step: int, sequence_length: int, net_arch: list[int]
) -> dict[str, Callable[[], BaseAlgorithm]]:
    if targets_per_step % sequence_length != 0:
        raise ValueError(
            f"--targets ({targets_per_step}) must be a multiple of --sequence-length ({sequence_length}): SoftQLambda "
            "regresses targets / sequence_length windows"
        )
    kwargs = common_kwargs(device, targets_per_step, net_arch)
    lambda_kwargs = {**kwargs, "batch_size": targets_per_step // sequence_length, "sequence_length": sequence_length}
    models: dict[str, Callable[[], BaseAlgorithm]] = {
        "DQN": lambda: DQN("MlpPolicy", ENV_ID, **kwargs),
        # SoftQ and SoftQLambda run Adam fused by default: this row separates that gain from the algorithms' own cost
        "DQN (fused Adam)": lambda: DQN(
            "MlpPolicy", ENV_ID, **{**kwargs, "policy_kwargs": dict(net_arch=net_arch, optimizer_kwargs=dict(fused=True))}
        ),
        "SoftQ": lambda: SoftQ("MlpPolicy", ENV_ID, ent_coef=0.05, **kwargs),
        "SoftQ (auto temperature)": lambda: SoftQ("MlpPolicy", ENV_ID, ent_coef="auto", **kwargs),
    }
    for trace in ("tree_backup", "retrace"):
        models[f"SoftQLambda ({trace})"] = lambda trace=trace: SoftQLambda(  # type: ignore[misc]
            "MlpPolicy", ENV_ID, ent_coef=0.05, trace=trace, **lambda_kwargs
        )
    # SoftQLambda's defaults: the tree-backup trace and the learned temperature
    models["SoftQLambda (tree_backup, auto temperature)"] = lambda: SoftQLambda("MlpPolicy", ENV_ID, **lambda_kwargs)
    return models


def select_models(
    models: dict[str, Callable[[], BaseAlgorithm]], names: list[str] | None
) -> dict[str, Callable[[], BaseAlgorithm]]:
    """:return: the models named in ``names`` (exact names), DQN always first (the ratios are to DQN)."""
    if not names:
        return models
    unknown = [name for name in names if name not in models]
    if unknown:
        raise ValueError(f"Unknown --algorithms {unknown}: choose among {list(models)}")
    return {name: make for name, make in models.items() if name == "DQN" or name in names}


def throughput(make: Callable[[], BaseAlgorithm], steps: int) -> float:
    model = make()
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(model.learning_starts)  # type: ignore[attr-defined]
    start = time.perf_counter()
    model.learn(steps, reset_num_timesteps=False)
    return steps / (time.perf_counter() - start)


def time_training(make: Callable[[], BaseAlgorithm], gradient_steps: int) -> tuple[float, float]:
    """
    :return: seconds per TD target of ``train()`` (gradient steps on a filled replay buffer), and seconds per
        sampled transition of ``replay_buffer.sample()`` alone, with the batch that ``train()`` samples
    """
    model = make()
    model.set_logger(Logger(folder=None, output_formats=[]))
    model.learn(5_000)  # fills the buffer and warms up
    batch_size = model.batch_size  # type: ignore[attr-defined]
    targets = batch_size * getattr(model, "sequence_length", 1)
    model.train(gradient_steps=10, batch_size=batch_size)  # type: ignore[attr-defined]
    if th.cuda.is_available():
        th.cuda.synchronize()
    start = time.perf_counter()
    model.train(gradient_steps=gradient_steps, batch_size=batch_size)  # type: ignore[attr-defined]
    if th.cuda.is_available():
        th.cuda.synchronize()
    train_seconds = (time.perf_counter() - start) / (gradient_steps * targets)

    replay_buffer = model.replay_buffer  # type: ignore[attr-defined]
    start = time.perf_counter()
    for _ in range(gradient_steps):
        replay_buffer.sample(batch_size)
    if th.cuda.is_available():
        th.cuda.synchronize()
    return train_seconds, (time.perf_counter() - start) / (gradient_steps * targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps timed per throughput run")
    parser.add_argument("--gradient-steps", type=int, default=300, help="gradient steps timed per train() run")
    parser.add_argument("--targets", type=int, default=256, help="TD targets per gradient step (B*T)")
    parser.add_argument("--sequence-length", type=int, default=8)
    parser.add_argument("--net-arch", type=int, nargs="+", default=[64, 64], help="hidden layers of every Q-network")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument(
        "--algorithms", nargs="+", default=None, help="only these rows (exact names, DQN is always measured); all by default"
    )
    args = parser.parse_args()
    th.set_num_threads(1)

    models = select_models(make_models(args.device, args.targets, args.sequence_length, args.net_arch), args.algorithms)
    results: dict[str, dict[str, list[float]]] = {
        name: {"steps_per_s": [], "us_per_target": [], "us_per_sampled_transition": []} for name in models
    }
    # Interleave algorithms across repeats so that machine noise affects them alike
    for _ in range(args.repeats):
        for name, make in models.items():
            results[name]["steps_per_s"].append(throughput(make, args.steps))
            train_seconds, sample_seconds = time_training(make, args.gradient_steps)
            results[name]["us_per_target"].append(1e6 * train_seconds)
            results[name]["us_per_sampled_transition"].append(1e6 * sample_seconds)

    dqn_fps = float(np.median(results["DQN"]["steps_per_s"]))
    dqn_us = float(np.median(results["DQN"]["us_per_target"]))
    dqn_sample_us = float(np.median(results["DQN"]["us_per_sampled_transition"]))
    print(f"{ENV_ID}, net_arch={args.net_arch}, {args.targets} TD targets per gradient step, device={args.device}, ")
    print(f"median of {args.repeats} interleaved repeats; torch {th.__version__}, SB3 {stable_baselines3.__version__}, ")
    print(f"sb3_softq {sb3_softq.__version__}, {platform.processor() or platform.machine()}, torch threads=1\n")
    print(
        "| algorithm | env steps/s | ratio to DQN | gradient steps/s | µs per TD target (train) | ratio to DQN "
        "| µs per sampled transition (replay buffer) | ratio to DQN |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary = {}
    for name, values in results.items():
        fps = float(np.median(values["steps_per_s"]))
        us = float(np.median(values["us_per_target"]))
        sample_us = float(np.median(values["us_per_sampled_transition"]))
        updates_per_s = 1e6 / (us * args.targets)
        summary[name] = {
            "steps_per_s": fps,
            "fps_ratio_to_dqn": fps / dqn_fps,
            "gradient_steps_per_s": updates_per_s,
            "us_per_target": us,
            "time_ratio_to_dqn": us / dqn_us,
            "us_per_sampled_transition": sample_us,
            "sample_ratio_to_dqn": sample_us / dqn_sample_us,
        }
        print(
            f"| {name} | {fps:.0f} | {fps / dqn_fps:.2f}x | {updates_per_s:.0f} | {us:.2f} | {us / dqn_us:.2f}x "
            f"| {sample_us:.3f} | {sample_us / dqn_sample_us:.2f}x |"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"args": vars(args), "torch": th.__version__, "results": summary, "raw": results}, handle, indent=2)


if __name__ == "__main__":
    main()
