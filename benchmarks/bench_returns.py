"""
Benchmark of the reverse recurrence behind the multi-step soft returns, G_k = b_k + a_k * G_{k+1}.

Candidates (same inputs, same outputs):

- ``loop``: reverse Python loop over time, vectorised over the batch (``_reverse_recurrence_loop``)
- ``scan``: parallel Hillis-Steele doubling scan, ceil(log2 T) passes (``_reverse_recurrence_scan``)
- ``matrix``: closed form G = M b with M[t, k] = prod_{i=t}^{k-1} a_i built by a masked cumulative product
  (no division, so zero coefficients are exact), O(B T^2); a reference only: it does not isolate non-finite
  values beyond a cut, as the shipped solvers do

plus ``shipped``: the whole ``soft_lambda_returns`` (4 actions, tree backup) as the package runs it, and
``compiled``: the same through ``compiled_soft_lambda_returns()`` (``torch.compile``; steady state, the compile time
of each shape is reported separately). Times are medians over interleaved rounds, in microseconds per call: on a
shared machine compare only figures of one run (other processes move them by tens of percent between runs).

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_returns.py
    python benchmarks/bench_returns.py --device cuda
"""

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from functools import partial

import torch as th

from sb3_softq.common.returns import (
    _reverse_recurrence_loop,
    _reverse_recurrence_scan,
    _solve_reverse_recurrence,
    compiled_soft_lambda_returns,
    soft_lambda_returns,
)


def reverse_recurrence_matrix(base: th.Tensor, coefs: th.Tensor) -> th.Tensor:
    """Closed form G_t = sum_{k >= t} (prod_{i=t}^{k-1} a_i) b_k, with a masked cumulative product."""
    n_steps = base.shape[-1]
    upper = th.ones(n_steps, n_steps, dtype=th.bool, device=base.device).triu()  # upper[t, i] = i >= t
    # products[b, t, j] = prod_{i=t}^{j} a_i for j >= t (factors with i < t are replaced by 1)
    products = th.where(upper, coefs.unsqueeze(1), th.ones_like(base).unsqueeze(1)).cumprod(dim=-1)
    # weights[b, t, k] = prod_{i=t}^{k-1} a_i for k >= t, 0 below the diagonal
    weights = th.cat((th.ones_like(products[..., :1]), products[..., :-1]), dim=-1) * upper
    return (weights @ base.unsqueeze(-1)).squeeze(-1)


def _synchronize(device: th.device) -> None:
    if device.type == "cuda":
        th.cuda.synchronize(device)


def time_interleaved(
    functions: dict[str, Callable[[], object]], device: th.device, rounds: int, round_time: float
) -> dict[str, float]:
    """Median time per call (microseconds) of each function, measured in interleaved rounds."""
    samples: dict[str, list[float]] = {name: [] for name in functions}
    for function in functions.values():  # warm up
        function()
    for _ in range(rounds):
        for name, function in functions.items():
            _synchronize(device)
            n_calls, start = 0, time.perf_counter()
            while True:
                function()
                n_calls += 1
                _synchronize(device)
                elapsed = time.perf_counter() - start
                if elapsed >= round_time:
                    break
            samples[name].append(elapsed / n_calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 256, 1024])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--n-actions", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--round-time", type=float, default=0.03, help="seconds per implementation per round")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile candidate")
    parser.add_argument("--trace", default="tree_backup", help="trace of the shipped and compiled candidates")
    parser.add_argument("--no-matrix", action="store_true", help="skip the O(B T^2) closed form")
    args = parser.parse_args()

    device = th.device(args.device)
    th.manual_seed(0)
    compiled = None
    if not args.no_compile:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = 64
        compiled = compiled_soft_lambda_returns()

    if device.type == "cuda":
        machine = th.cuda.get_device_name(device)
    else:
        machine = (
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {th.get_num_threads()} torch thread(s)"
        )
    print(f"Device: {device} ({machine}); torch {th.__version__}; Python {platform.python_version()}")
    print("Median microseconds per call (lower is better); float32; trace coefficients ~U(0, 1), 20% zeros.\n")

    names = ["loop", "scan"] + ([] if args.no_matrix else ["matrix"])
    header = ["B", "T", *names, "fastest", "shipped (`soft_lambda_returns`)"]
    if compiled is not None:
        header += ["compiled (`compiled_soft_lambda_returns`)", "compile time (s)"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for batch_size in args.batch_sizes:
        for n_steps in args.lengths:
            base = th.randn(batch_size, n_steps, device=device)
            coefs = th.rand(batch_size, n_steps, device=device) * (th.rand(batch_size, n_steps, device=device) > 0.2)
            reference = _reverse_recurrence_loop(base, coefs)
            candidates: dict[str, Callable[[], object]] = {
                "loop": partial(_reverse_recurrence_loop, base, coefs),
                "scan": partial(_reverse_recurrence_scan, base, coefs),
            }
            if not args.no_matrix:
                candidates["matrix"] = partial(reverse_recurrence_matrix, base, coefs)
            for name, candidate in candidates.items():
                th.testing.assert_close(candidate(), reference, rtol=1e-4, atol=1e-4, msg=f"{name} disagrees")
            th.testing.assert_close(_solve_reverse_recurrence(base, coefs), reference, rtol=1e-4, atol=1e-4)

            rewards = th.randn(batch_size, n_steps, device=device)
            next_q_values = th.randn(batch_size, n_steps, args.n_actions, device=device)
            next_actions = th.randint(args.n_actions, (batch_size, n_steps), device=device)
            terminated = th.rand(batch_size, n_steps, device=device) < 0.02
            continues = ~terminated & (th.rand(batch_size, n_steps, device=device) > 0.02)
            window = (rewards, next_q_values, next_actions, terminated, continues, 0.99, 0.9, 0.1, args.trace)
            mu = th.full((batch_size, n_steps), 0.5, device=device)
            candidates["shipped"] = partial(soft_lambda_returns, *window, next_behaviour_probs=mu)
            compile_time = float("nan")
            if compiled is not None:
                start = time.perf_counter()
                result = compiled(*window, next_behaviour_probs=mu)
                _synchronize(device)
                compile_time = time.perf_counter() - start
                th.testing.assert_close(result.returns, candidates["shipped"](), rtol=1e-5, atol=1e-5)
                candidates["compiled"] = partial(compiled, *window, next_behaviour_probs=mu)

            times = time_interleaved(candidates, device, args.rounds, args.round_time)
            fastest = min(names, key=lambda name: times[name])
            row = [
                str(batch_size),
                str(n_steps),
                *(f"{times[name]:.0f}" for name in names),
                fastest,
                f"{times['shipped']:.0f}",
            ]
            if compiled is not None:
                row += [f"{times['compiled']:.0f}", f"{compile_time:.1f}"]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
