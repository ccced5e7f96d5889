"""
Learning curves of SoftQ / SoftQLambda against SB3's DQN and sb3-contrib's QR-DQN, each with its rl-zoo3
hyperparameters (ours from ``hyperparams/``, theirs from rl-zoo3's own files), several seeds, in one run.

Every ``--eval-freq`` environment steps the greedy policy is evaluated on ``--eval-episodes`` episodes
(SB3's ``EvalCallback``). The table reports, per algorithm: the final evaluation return, the area under the
evaluation curve (mean evaluation return over the run), and the environment steps and the wall-clock seconds of
training until the evaluation return first reaches the environment's threshold (medians over seeds; "—" if fewer than
half of the seeds reach it, "n/a" for seconds where runs of an older results file did not record them). The seconds
are those of ``learn()`` up to that evaluation, the evaluations themselves (and checkpoints) excluded. On MinAtar's
games the threshold is DQN's final return (mean over seeds) in the same table, unless ``--threshold`` is given.

Usage (one command per table)::

    python benchmarks/bench_learning.py --env CartPole-v1 --seeds 5 --workers 2 \\
        --algos dqn softq softq_lambda --out benchmarks/results/learning_CartPole-v1

writes ``<out>.json`` (curves, versions, seeds, machine), ``<out>.md`` (the table) and ``<out>.png`` (mean ± std).
Algorithm names (columns): ``dqn``, ``qrdqn``, ``softq``, ``softq_lambda``, each with its rl-zoo3 entry, and
variants of an entry after a colon, comma-separated: ``<name>=<value>`` (the value read as YAML, e.g. ``dqn:n_steps=3``,
DQN with 3-step returns), a trace (``softq_lambda:retrace``, the entry with another trace) or ``munchausen``
(``munchausen_coef=0.9``, M-DQN's value; e.g. ``softq_lambda:munchausen``). The variant ``defaults`` replaces the entry
by the constructor's defaults (``SoftQLambda("MlpPolicy", env_id, seed=seed)``, what a user who passes nothing gets;
with ``--n-timesteps``), e.g. ``--algos dqn:defaults softq_lambda:defaults``.

MinAtar (``--env MinAtar/Breakout-v1``, ``MinAtar/Asterix-v1`` or ``MinAtar/Freeway-v1``; the ``minatar`` extra):
DQN and QR-DQN take the MinAtar paper's DQN from ``benchmarks/hyperparams/`` (rl-zoo3 has no MinAtar entries),
SoftQ and SoftQLambda their entries in ``hyperparams/``; every algorithm uses the same network
(:class:`sb3_softq.common.torch_layers.MinAtarCNN`). Evaluation episodes are cut at
``MINATAR_EVAL_MAX_EPISODE_STEPS`` steps (MinAtar's games have no time limit, and a greedy policy may never lose).

On one machine a run is deterministic given its algorithm, seed, hyperparameters, the package versions and the code
(one PyTorch thread, seeded environments and models). Across machines it need not be: anything that changes the
rounding of one operation takes a run elsewhere, and the LunarLander-v3 runs of an earlier machine, DQN's included,
were not reproduced on a later one with the same code and versions. Every run therefore records the commit of the
checkout it ran from (``code``, with ``+changes`` when files of the package differed from it) and the kernels PyTorch
chose for the CPU (``cpu_capability``: ``AVX2``, ``AVX512``...), and the table's note names the commits and kernels of
its runs when they differ. A table can be extended without training everything again: ``--reuse
<earlier>.json`` takes the runs it already holds (same environment, evaluation settings, versions and rl-zoo3 entry,
which every run records) and trains only the missing algorithms and seeds, those whose entry changed since, and those
named by ``--rerun`` (every algorithm whose code changed since). ``--reuse`` takes several files, so tables trained in
parts (one command per group of algorithms or seeds) merge into one; two files holding different runs of the same
algorithm and seed are an error. ``<out>.json`` is written after every finished run, so an interrupted command
resumes with ``--reuse <out>.json``.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import textwrap
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import numpy as np
import yaml

THRESHOLDS = {"CartPole-v1": 475.0, "Acrobot-v1": -100.0, "MountainCar-v0": -110.0, "LunarLander-v3": 200.0}
#: MinAtar's games that the benchmark trains on (the two others are kept out of tuning and benchmarks, for an
#: independent validation); their threshold is DQN's final return in the same table
MINATAR_ENVS = ("MinAtar/Asterix-v1", "MinAtar/Breakout-v1", "MinAtar/Freeway-v1")
#: Greedy evaluation episodes on MinAtar are cut (truncated) after this many steps
MINATAR_EVAL_MAX_EPISODE_STEPS = 20_000
#: The algorithm of each column name (before the colon)
ALGOS = ("dqn", "qrdqn", "softq", "softq_lambda")
#: Named variants of an entry (``<algo>:<variant>``) and the values they set
NAMED_VARIANTS: dict[str, dict[str, Any]] = {"munchausen": {"munchausen_coef": 0.9}}
#: The variant that trains with the constructor's defaults instead of the rl-zoo3 entry
DEFAULTS_VARIANT = "defaults"
#: Folder of the DQN and QR-DQN entries for the environments that rl-zoo3's files do not have (MinAtar)
BENCHMARK_HYPERPARAMS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "hyperparams")


def is_minatar(env_id: str) -> bool:
    """:return: whether ``env_id`` is one of MinAtar's games"""
    return env_id.startswith("MinAtar/")


def variant_overrides(algo: str) -> dict[str, Any]:
    """
    The values that a column changes in its algorithm's rl-zoo3 entry.

    :param algo: ``<name>`` or ``<name>:<variant>[,<variant>...]`` with ``<name>`` in :data:`ALGOS` and each variant
        ``<key>=<value>`` (the value read as YAML), a trace of SoftQLambda, or a key of :data:`NAMED_VARIANTS`
    :return: the keyword arguments that replace the entry's
    :raises ValueError: unknown algorithm or variant
    """
    from sb3_softq.common.traces import TRACES

    name, _, variants = algo.partition(":")
    if name not in ALGOS:
        raise ValueError(f"Unknown algorithm {name!r} in {algo!r}, expected one of {list(ALGOS)}")
    overrides: dict[str, Any] = {}
    for variant in filter(None, variants.split(",")):
        key, is_assignment, value = variant.partition("=")
        if variant == DEFAULTS_VARIANT:
            continue
        if is_assignment:
            overrides[key] = yaml.safe_load(value)
        elif variant in NAMED_VARIANTS:
            overrides.update(NAMED_VARIANTS[variant])
        elif name == "softq_lambda" and variant in TRACES:
            overrides["trace"] = variant
        else:
            raise ValueError(
                f"Unknown variant {variant!r} in {algo!r}: expected <key>=<value>, {DEFAULTS_VARIANT!r}, one of "
                f"{list(NAMED_VARIANTS)}" + (f" or a trace {list(TRACES)}" if name == "softq_lambda" else "")
            )
    return overrides


def uses_defaults(algo: str) -> bool:
    """:return: whether the column trains with the constructor's defaults (the ``defaults`` variant)"""
    return DEFAULTS_VARIANT in algo.partition(":")[2].split(",")


def hyperparameters_source(env_id: str, algos: list[str]) -> str:
    """:return: where the table's columns take their hyperparameters from, for its caption"""
    if all(uses_defaults(algo) for algo in algos):
        return "the constructor's defaults of each algorithm, with the values that a column names"
    source = "rl-zoo3 hyperparameters of each algorithm"
    if is_minatar(env_id):
        source += " (DQN and QR-DQN: benchmarks/hyperparams/)"
    if any(uses_defaults(algo) for algo in algos):
        source += ", the constructor's defaults for the `:defaults` columns"
    return source


def algorithm_class(algo: str) -> type:
    """:return: the class of a column's algorithm"""
    from sb3_contrib import QRDQN
    from stable_baselines3 import DQN

    from sb3_softq import SoftQ, SoftQLambda

    return {"dqn": DQN, "qrdqn": QRDQN, "softq": SoftQ, "softq_lambda": SoftQLambda}[algo.partition(":")[0]]


def constructor_defaults(algo: str) -> dict[str, Any]:
    """
    :return: the default values of the algorithm's constructor (those that JSON holds), which a ``defaults`` column
        records as its entry: ``--reuse`` then trains it again when a default changed
    """
    import inspect

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(algorithm_class(algo).__init__).parameters.items()
        if parameter.default is not inspect.Parameter.empty and not name.startswith("_")
    }
    if algo.partition(":")[0] in ("softq", "softq_lambda"):
        from sb3_softq.softq.softq import DEFAULT_TARGET_ENTROPY_FRACTION

        # What ``target_entropy="auto"`` means
        defaults["target_entropy_fraction"] = DEFAULT_TARGET_ENTROPY_FRACTION
    return json.loads(json.dumps({"policy": "MlpPolicy", **defaults}, default=repr))


def hyperparams_file(algo: str, env_id: str) -> str:
    """
    :return: the rl-zoo3 hyperparameter file of ``algo``: ours for SoftQ and SoftQLambda; for DQN and QR-DQN,
        rl-zoo3's own, or the benchmark's (``benchmarks/hyperparams/``) on MinAtar
    """
    import rl_zoo3

    from sb3_softq.zoo import hyperparams_path

    name = algo.partition(":")[0]
    if name in ("dqn", "qrdqn"):
        rl_zoo3_folder = os.path.join(os.path.dirname(rl_zoo3.__file__), "hyperparams")
        return os.path.join(BENCHMARK_HYPERPARAMS if is_minatar(env_id) else rl_zoo3_folder, f"{name}.yml")
    return hyperparams_path(name)


def zoo_entry(algo: str, env_id: str) -> dict[str, Any]:
    """
    :return: the algorithm's rl-zoo3 entry for ``env_id`` as its file writes it, with the column's variants (e.g. the
        ``trace`` of ``softq_lambda:<trace>``), as recorded with every run and compared by ``--reuse``
    """
    if uses_defaults(algo):
        entry = constructor_defaults(algo)
    else:
        with open(hyperparams_file(algo, env_id)) as handle:
            entry = yaml.safe_load(handle)[env_id]
    # Through JSON, as the results files hold it (tuples become lists)
    return json.loads(json.dumps({**entry, **variant_overrides(algo)}))


def zoo_hyperparams(algo: str, env_id: str) -> tuple[str, dict[str, Any], int]:
    """
    :param algo: a column name (see :func:`variant_overrides`), e.g. ``dqn``, ``dqn:n_steps=3``, ``softq_lambda:retrace``
    :param env_id: environment id
    :return: policy, keyword arguments and ``n_timesteps`` of the algorithm's rl-zoo3 entry, with the column's variants
        (with the ``defaults`` variant: ``MlpPolicy``, the other variants only, and no ``n_timesteps``: 0)
    """
    from sb3_softq.zoo import load_hyperparams

    if uses_defaults(algo):
        return "MlpPolicy", variant_overrides(algo), 0

    policy, kwargs, n_timesteps = load_hyperparams(algo.partition(":")[0], env_id, hyperparams_file(algo, env_id))
    kwargs.update(variant_overrides(algo))
    return policy, kwargs, n_timesteps


def checkpoint_paths(checkpoint_dir: str, algo: str, env_id: str, seed: int) -> dict[str, str]:
    """:return: the files of a run's checkpoint: the model, its replay buffer and the run so far"""
    stem = os.path.join(checkpoint_dir, f"{env_id.replace('/', '-')}_{algo.replace(':', '-')}_{seed}")
    return {"model": stem + ".zip", "buffer": stem + "_buffer.pkl", "state": stem + ".json"}


def run_one(
    algo: str,
    env_id: str,
    seed: int,
    eval_freq: int,
    eval_episodes: int,
    n_timesteps: int | None,
    checkpoint_dir: str | None = None,
) -> dict[str, Any]:
    """
    Train one algorithm on one seed with greedy evaluations every ``eval_freq`` steps.

    With ``checkpoint_dir``, the model, its replay buffer and the evaluations so far are saved after every
    evaluation, and a run that finds its checkpoint resumes from it (a killed command loses at most ``eval_freq``
    steps). A resumed run goes on with new environments and random seeds (``seed + 100,000 * resumes``): it is a valid
    run, but not the same as one trained without interruption, and it records where it was resumed.

    At every evaluation the run also records ``train_seconds``: the wall-clock seconds of ``learn()`` so far, the
    evaluations (and checkpoints) excluded; a run resumed from a checkpoint written before these were recorded has none.
    """
    import torch as th
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback
    from stable_baselines3.common.env_util import make_vec_env

    from sb3_softq.zoo.minatar import register_minatar_envs

    th.set_num_threads(1)
    if is_minatar(env_id) and not register_minatar_envs():
        raise RuntimeError(f"{env_id} needs MinAtar: pip install sb3_softq[minatar]")
    algo_class = algorithm_class(algo)
    policy, kwargs, zoo_timesteps = zoo_hyperparams(algo, env_id)
    total = n_timesteps or zoo_timesteps
    paths = checkpoint_paths(checkpoint_dir, algo, env_id, seed) if checkpoint_dir else None
    state: dict[str, Any] = {"timesteps": [], "returns": [], "lengths": [], "seconds": 0.0, "resumed_at": []}
    if paths is not None and os.path.exists(paths["state"]):
        with open(paths["state"]) as handle:
            state = json.load(handle)
        state["resumed_at"].append(state["timesteps"][-1])
    # Checkpoints written before the training time was recorded have no ``train_seconds``: such a run records none
    timed = "train_seconds" in state or not state["resumed_at"]
    train_seconds: list[float] = list(state.get("train_seconds", []))
    run_seed = seed + 100_000 * len(state["resumed_at"])
    env = make_vec_env(env_id, n_envs=1, seed=run_seed)
    eval_env_kwargs = {"max_episode_steps": MINATAR_EVAL_MAX_EPISODE_STEPS} if is_minatar(env_id) else None
    eval_env = make_vec_env(env_id, n_envs=1, seed=run_seed + 10_000, env_kwargs=eval_env_kwargs)
    if state["resumed_at"]:
        assert paths is not None
        model = algo_class.load(paths["model"], env=env)
        model.load_replay_buffer(paths["buffer"])
        model.set_random_seed(run_seed)
    else:
        model = algo_class(policy, env, seed=seed, **kwargs)

    class SaveCheckpoint(BaseCallback):
        """After every evaluation: the model, its replay buffer and the evaluations so far (each file replaced whole)."""

        def _on_step(self) -> bool:
            assert paths is not None and isinstance(self.parent, EvalCallback)
            done = {
                **state,
                "timesteps": [int(t) for t in self.parent.evaluations_timesteps],
                "returns": [[float(r) for r in rs] for rs in self.parent.evaluations_results],
                "lengths": [[int(n) for n in ns] for ns in self.parent.evaluations_length],
                "seconds": state["seconds"] + time.perf_counter() - start,
                **({"train_seconds": list(train_seconds)} if timed else {}),
            }
            for name, save in (("model", self.model.save), ("buffer", self.model.save_replay_buffer)):  # type: ignore[attr-defined]
                save(paths[name] + ".tmp")
                os.replace(paths[name] + ".tmp", paths[name])  # SB3 adds no suffix to a name that has one
            with open(paths["state"] + ".tmp", "w") as handle:
                json.dump(done, handle)
            os.replace(paths["state"] + ".tmp", paths["state"])
            return True

    class TimedEvalCallback(EvalCallback):
        """
        SB3's ``EvalCallback`` that also appends to ``train_seconds``, at every evaluation, the wall-clock seconds of
        training so far: from the start of ``learn()`` (plus those before a resumed checkpoint), the time spent in
        evaluations and in the callback after them (checkpoints) excluded.
        """

        def _on_training_start(self) -> None:
            super()._on_training_start()
            self.training_start = time.perf_counter()
            self.evaluation_seconds = 0.0
            self.seconds_before = train_seconds[-1] if train_seconds else 0.0

        def _on_step(self) -> bool:
            if not (self.eval_freq > 0 and self.n_calls % self.eval_freq == 0):  # EvalCallback's test
                return super()._on_step()
            begin = time.perf_counter()
            train_seconds.append(self.seconds_before + begin - self.training_start - self.evaluation_seconds)
            continue_training = super()._on_step()
            self.evaluation_seconds += time.perf_counter() - begin
            return continue_training

    with tempfile.TemporaryDirectory() as log_path:  # EvalCallback keeps its results only when given a log path
        callback = TimedEvalCallback(
            eval_env,
            eval_freq=eval_freq,
            n_eval_episodes=eval_episodes,
            log_path=log_path,
            verbose=0,
            callback_after_eval=SaveCheckpoint() if paths is not None else None,
        )
        callback.evaluations_timesteps = list(state["timesteps"])
        callback.evaluations_results = [list(rs) for rs in state["returns"]]
        callback.evaluations_length = [list(ns) for ns in state["lengths"]]
        start = time.perf_counter()
        model.learn(total - model.num_timesteps, callback=callback, reset_num_timesteps=not state["resumed_at"])
    run = {
        "algo": algo,
        "env": env_id,
        "seed": seed,
        "timesteps": [int(t) for t in callback.evaluations_timesteps],
        "returns": [float(np.mean(r)) for r in callback.evaluations_results],
        "seconds": state["seconds"] + time.perf_counter() - start,
        "n_timesteps": total,
        "eval_episodes": eval_episodes,
        "hyperparameters": zoo_entry(algo, env_id),
        "code": code_version(),
        # PyTorch picks its CPU kernels by instruction set (AVX2, AVX-512...): they round differently
        "cpu_capability": th.backends.cpu.get_cpu_capability(),
    }
    if timed:
        run["train_seconds"] = [round(float(t), 3) for t in train_seconds]
    if state["resumed_at"]:
        run["resumed_at"] = state["resumed_at"]
    return run


def remove_checkpoint(checkpoint_dir: str | None, run: dict[str, Any]) -> None:
    """Delete the checkpoint of a finished run (its results are on disk)."""
    if checkpoint_dir:
        for path in checkpoint_paths(checkpoint_dir, run["algo"], run["env"], run["seed"]).values():
            if os.path.exists(path):
                os.remove(path)


def cpu_model() -> str:
    """:return: the processor's name (Linux), else what ``platform`` knows"""
    try:
        with open("/proc/cpuinfo") as handle:
            return next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown processor"


def code_version() -> str:
    """
    :return: the commit of the checkout that the benchmarks run from, with ``+changes`` when tracked files of the
        package (``sb3_softq/``) differ from it, or ``"unknown"`` outside a git checkout
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(["git", "-C", root, "diff", "--quiet", "HEAD", "--", "sb3_softq"], check=False).returncode
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


def versions() -> dict[str, str]:
    """:return: the versions that a run's results depend on"""
    import gymnasium
    import rl_zoo3
    import sb3_contrib
    import stable_baselines3
    import torch

    import sb3_softq

    return {
        "sb3_softq": sb3_softq.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_contrib": sb3_contrib.__version__,
        "rl_zoo3": rl_zoo3.__version__,
        "gymnasium": gymnasium.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        **optional_versions(),
    }


def optional_versions() -> dict[str, str]:
    """:return: the versions of the environment packages that are installed (MinAtar, Box2D for LunarLander)"""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("minatar", "Box2D"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def reusable_runs(path: str, env_id: str, eval_freq: int, eval_episodes: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """
    The runs of an earlier results file that this run can take instead of training them again.

    :param path: ``<out>.json`` written by an earlier run
    :return: the earlier file's ``meta`` and its runs on ``env_id`` with the same evaluation frequency and number of
        evaluation episodes
    :raises ValueError: when the earlier run used other package versions (its runs would not be reproduced); files
        written before a package's version was recorded are compared on the packages they name
    """
    with open(path) as handle:
        earlier = json.load(handle)
    meta = earlier["meta"]
    current = versions()
    if any(meta["versions"][name] != current[name] for name in set(meta["versions"]) & set(current)):
        raise ValueError(f"--reuse {path}: its runs come from other versions ({meta['versions']}), not {current}")
    # Files written before each run recorded its number of evaluation episodes give it in their command only
    default_episodes = int(meta["command"].split("eval_episodes=")[1].split()[0])
    runs = [
        run
        for run in earlier["runs"]
        if run["env"] == env_id
        and run["timesteps"][0] == eval_freq
        and run.get("eval_episodes", default_episodes) == eval_episodes
    ]
    return meta, runs


def first_reached(run: dict[str, Any], threshold: float) -> int | None:
    """:return: the first evaluation step whose mean return reaches ``threshold``, or ``None``"""
    return next((t for t, r in zip(run["timesteps"], run["returns"], strict=True) if r >= threshold), None)


def seconds_to_reach(run: dict[str, Any], threshold: float) -> float | None:
    """
    :return: the training seconds (``train_seconds``) at the first evaluation whose mean return reaches ``threshold``;
        ``None`` if none does or if the run did not record its training time
    """
    if "train_seconds" not in run:
        return None
    return next(
        (t for t, r in zip(run["train_seconds"], run["returns"], strict=True) if r >= threshold),
        None,
    )


def median_to_threshold(values: list[float | None]) -> float | None:
    """
    :param values: per seed, the steps or seconds to the threshold, ``None`` where the seed never reached it
    :return: the median over all seeds, counting a seed that never reached the threshold as infinitely slow; ``None``
        if fewer than half of the seeds reached it
    """
    reached = [value for value in values if value is not None]
    if len(reached) * 2 <= len(values):
        return None
    return float(np.median(sorted(reached) + [np.inf] * (len(values) - len(reached))))


def summarise(runs: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    steps_to_threshold = [first_reached(run, threshold) for run in runs]
    # Only where every run recorded its training time (runs of older results files did not)
    timed = all("train_seconds" in run for run in runs)
    seconds_to_threshold = [seconds_to_reach(run, threshold) for run in runs] if timed else None
    finals = [run["returns"][-1] for run in runs]
    areas = [float(np.mean(run["returns"])) for run in runs]
    return {
        "final_mean": float(np.mean(finals)),
        "final_std": float(np.std(finals)),
        "auc_mean": float(np.mean(areas)),
        "auc_std": float(np.std(areas)),
        "steps_to_threshold": steps_to_threshold,
        "median_steps_to_threshold": median_to_threshold([float(s) if s is not None else None for s in steps_to_threshold]),
        "seconds_to_threshold": seconds_to_threshold,
        "median_seconds_to_threshold": None if seconds_to_threshold is None else median_to_threshold(seconds_to_threshold),
        "seeds_reaching_threshold": sum(s is not None for s in steps_to_threshold),
        "n_seeds": len(runs),
        "seconds_mean": float(np.mean([run["seconds"] for run in runs])),
    }


def threshold_text(row: dict[str, Any], key: str, timed: bool = True) -> str:
    """:return: a median to the threshold as the table writes it: "n/a" without timing, "—" when not reached"""
    if not timed:
        return "n/a"
    value = row[key]
    return "—" if value is None or not np.isfinite(value) else f"{value:,.0f}"


def env_threshold(env_id: str, runs: list[dict[str, Any]], threshold: float | None = None) -> tuple[float, str]:
    """
    :param env_id: environment id
    :param runs: all the runs of the table
    :param threshold: an explicit threshold (``--threshold``), or ``None``
    :return: the threshold and how it was set: the explicit one, the environment's (:data:`THRESHOLDS`), or on
        MinAtar DQN's final return (the mean over its seeds of the last evaluation return)
    :raises ValueError: on MinAtar without DQN runs nor an explicit threshold
    """
    if threshold is not None:
        return threshold, f"threshold {threshold:g}, given"
    if env_id in THRESHOLDS:
        return THRESHOLDS[env_id], f"threshold {THRESHOLDS[env_id]:g}"
    finals = [run["returns"][-1] for run in runs if run["algo"] == "dqn"]
    if not finals:
        raise ValueError(f"{env_id}: the threshold is DQN's final return: add `dqn` to --algos, or give --threshold")
    value = float(np.mean(finals))
    return value, f"threshold {value:.2f}, DQN's final return"


def plot(results: dict[str, list[dict[str, Any]]], env_id: str, path: str, threshold: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(11, 4.5))
    for algo, runs in results.items():
        length = min(len(run["returns"]) for run in runs)
        steps = np.array(runs[0]["timesteps"][:length])
        curves = np.array([run["returns"][:length] for run in runs])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        # Columns with many variants (e.g. a defaults column with several values) wrap in the legend
        axis.plot(steps, mean, label=textwrap.fill(algo.replace(",", ", "), width=60))
        axis.fill_between(steps, mean - std, mean + std, alpha=0.2)
    axis.axhline(threshold, color="grey", linestyle="--", linewidth=1, label="threshold")
    axis.set_xlabel("environment steps")
    axis.set_ylabel("evaluation return (greedy)")
    axis.set_title(f"{env_id}: mean ± std over {len(next(iter(results.values())))} seeds")
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0))
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse (``parser.error``) arguments that do not make a table."""
    unknown = sorted(set(args.rerun) - set(args.algos))
    if unknown:
        parser.error(f"--rerun {' '.join(unknown)}: not in --algos")
    for algo in args.algos:
        try:
            variant_overrides(algo)
        except ValueError as error:
            parser.error(f"--algos: {error}")
    if args.n_timesteps is None and any(map(uses_defaults, args.algos)):
        parser.error(f"--algos {DEFAULTS_VARIANT}: the constructor's defaults have no n_timesteps: give --n-timesteps")
    if args.env not in THRESHOLDS and args.threshold is None and "dqn" not in args.algos:
        parser.error(f"--env {args.env}: the threshold is DQN's final return: add dqn to --algos, or give --threshold")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, choices=[*sorted(THRESHOLDS), *MINATAR_ENVS])
    parser.add_argument(
        "--algos",
        nargs="+",
        default=["dqn", "softq", "softq_lambda"],
        help="columns: dqn, qrdqn, softq, softq_lambda, and variants such as dqn:n_steps=3, softq_lambda:retrace, "
        "softq_lambda:munchausen",
    )
    parser.add_argument(
        "--threshold", type=float, default=None, help="return to reach (default: the environment's; MinAtar: DQN's final)"
    )
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--eval-freq", type=int, default=2_500)
    parser.add_argument("--eval-episodes", type=int, default=10)
    parser.add_argument("--n-timesteps", type=int, default=None, help="override every algorithm's n_timesteps")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", required=True, help="output path without extension")
    parser.add_argument(
        "--reuse", nargs="+", default=[], help="results JSON files of earlier runs: take their runs, do not train them again"
    )
    parser.add_argument("--rerun", nargs="+", default=[], help="with --reuse: algorithms to train again all the same")
    parser.add_argument(
        "--checkpoints",
        default=None,
        help="folder for a checkpoint of every run after each evaluation; runs resume from it (for runs of many hours)",
    )
    args = parser.parse_args()
    check_arguments(parser, args)

    entries = {algo: zoo_entry(algo, args.env) for algo in args.algos}
    reused: dict[tuple[str, int], dict[str, Any]] = {}
    reused_file: dict[tuple[str, int], str] = {}
    reused_from: list[str] = []
    reused_notes: list[str] = []
    for path in args.reuse:
        earlier_meta, earlier_runs = reusable_runs(path, args.env, args.eval_freq, args.eval_episodes)
        reused_from += [*earlier_meta.get("reused", {}).get("from", []), earlier_meta["command"]]
        reused_notes += [*earlier_meta.get("reused", {}).get("notes", []), *filter(None, [earlier_meta.get("note")])]
        for run in earlier_runs:
            algo, seed = key = run["algo"], run["seed"]
            if (
                algo not in args.algos
                or algo in args.rerun
                or seed >= args.seeds
                or run["n_timesteps"] != (args.n_timesteps or zoo_hyperparams(algo, args.env)[2])
            ):
                continue
            # Runs record their entry (files written before that was recorded are taken as they are)
            if run.get("hyperparameters", entries[algo]) != entries[algo]:
                print(f"--reuse {path}: {algo} seed {seed} was trained with another entry: training it again", file=sys.stderr)
                continue
            if key in reused and reused[key]["returns"] != run["returns"]:
                raise ValueError(
                    f"--reuse: {algo} seed {seed} differs between {reused_file[key]} and {path}; pass only the file "
                    f"holding the current runs, or --rerun {algo}"
                )
            reused[key], reused_file[key] = run, path
    jobs = [
        (algo, args.env, seed, args.eval_freq, args.eval_episodes, args.n_timesteps, args.checkpoints)
        for seed in range(args.seeds)
        for algo in args.algos
        if (algo, seed) not in reused
    ]
    # Known in advance, except DQN's final return on MinAtar (set once every run is done)
    threshold = args.threshold if args.threshold is not None else THRESHOLDS.get(args.env)
    meta = {
        "command": "python benchmarks/bench_learning.py " + " ".join(f"{k}={v}" for k, v in vars(args).items()),
        "args": vars(args),
        "versions": versions(),
        "machine": f"{platform.machine()}, {cpu_model()}, {os.cpu_count()} CPU cores, torch threads=1 per run",
        "threshold": threshold,
        "seeds": list(range(args.seeds)),
        "eval_max_episode_steps": MINATAR_EVAL_MAX_EPISODE_STEPS if is_minatar(args.env) else None,
    }
    if reused:
        meta["reused"] = {
            "runs": sorted(f"{algo} seed {seed}" for algo, seed in reused),
            "from": reused_from,
            "notes": reused_notes,
        }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    trained: dict[tuple[str, int], dict[str, Any]] = {}
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(run_one, *job) for job in jobs]
        for done, future in enumerate(as_completed(futures), start=1):
            run = future.result()
            trained[run["algo"], run["seed"]] = run
            # Every finished run is on disk at once: an interrupted table resumes with ``--reuse <out>.json``
            with open(args.out + ".json", "w") as handle:
                json.dump({"meta": meta, "runs": [*reused.values(), *trained.values()]}, handle, indent=1)
            remove_checkpoint(args.checkpoints, run)
            reached = "" if threshold is None else f"threshold first reached at {first_reached(run, threshold)} steps, "
            print(
                f"[{done}/{len(jobs)}] {run['algo']} seed {run['seed']}: final return {run['returns'][-1]:.1f}, "
                f"{reached}{run['seconds']:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    runs = [{**reused, **trained}[algo, seed] for seed in range(args.seeds) for algo in args.algos]
    results = {algo: [run for run in runs if run["algo"] == algo] for algo in args.algos}
    threshold, threshold_rule = env_threshold(args.env, runs, args.threshold)
    meta["threshold"], meta["threshold_rule"] = threshold, threshold_rule
    summary = {algo: summarise(algo_runs, threshold) for algo, algo_runs in results.items()}
    with open(args.out + ".json", "w") as handle:
        json.dump({"meta": meta, "summary": summary, "runs": runs}, handle, indent=1)
    episodes_cut = f", cut at {MINATAR_EVAL_MAX_EPISODE_STEPS:,} steps" if is_minatar(args.env) else ""
    lines = [
        f"{args.env} ({threshold_rule}), {args.seeds} seeds, greedy evaluation every {args.eval_freq} steps "
        f"over {args.eval_episodes} episodes{episodes_cut}; {hyperparameters_source(args.env, args.algos)}. Seconds: "
        "wall-clock time of training (evaluations excluded) on one PyTorch thread.",
        "",
    ]
    resumed = [
        f"{run['algo']} seed {run['seed']} (at {', '.join(map(str, run['resumed_at']))})"
        for run in runs
        if run.get("resumed_at")
    ]
    if resumed:
        lines += [
            "Runs resumed from a checkpoint after an interruption, with new environment and random seeds from there on "
            "(`--checkpoints`): " + ", ".join(resumed) + ".",
            "",
        ]
    for field, what in (
        ("code", "versions of the code (commit"),
        ("cpu_capability", "CPU kernels of PyTorch (instruction set"),
    ):
        values = sorted({run.get(field, "not recorded") for run in runs})
        if len(values) > 1:
            lines += [
                f"The runs come from several {what} of each run in the JSON file, `{field}`): "
                + "; ".join(
                    f"{value}: " + ", ".join(sorted({run["algo"] for run in runs if run.get(field, "not recorded") == value}))
                    for value in values
                )
                + ".",
                "",
            ]
    if reused:
        lines += [
            f"{len(reused)} of the {len(runs)} runs were taken from earlier results files with the same package versions "
            "(`--reuse`; the JSON file's `meta.reused` lists their commands and notes): "
            + ", ".join(sorted({algo for algo, _ in reused}))
            + ".",
            "",
        ]
    lines += [
        "| algorithm | final return | area under curve | steps to threshold (median) | seconds to threshold (median) "
        "| seeds reaching it |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for algo, row in summary.items():
        steps_text = threshold_text(row, "median_steps_to_threshold")
        seconds_text = threshold_text(row, "median_seconds_to_threshold", timed=row["seconds_to_threshold"] is not None)
        lines.append(
            f"| {algo} | {row['final_mean']:.1f} ± {row['final_std']:.1f} | {row['auc_mean']:.1f} ± {row['auc_std']:.1f} "
            f"| {steps_text} | {seconds_text} | {row['seeds_reaching_threshold']}/{row['n_seeds']} |"
        )
    table = "\n".join(lines) + "\n"
    with open(args.out + ".md", "w") as handle:
        handle.write(table)
    plot(results, args.env, args.out + ".png", threshold)
    print(table)


if __name__ == "__main__":
    main()
