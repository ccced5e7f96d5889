"""rl-zoo3 integration: ``python -m sb3_softq.zoo`` train / enjoy / optimize / reload a trial / packaging."""

import argparse
import importlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch as th
import yaml
from torch import nn

pytest.importorskip("rl_zoo3")

import rl_zoo3
from rl_zoo3 import hyperparams_opt
from rl_zoo3.exp_manager import ExperimentManager

from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.common.traces import TRACES
from sb3_softq.zoo import ZOO_ALGOS, hyperparams_path, load_hyperparams, minimal_replay_buffer, register
from sb3_softq.zoo import ExperimentManager as ZooExperimentManager
from sb3_softq.zoo.cli import COMMANDS, main
from sb3_softq.zoo.samplers import HYPERPARAMS_CONVERTER, HYPERPARAMS_SAMPLER

REPO_ROOT = Path(__file__).resolve().parent.parent
ALGO_NAMES = ["softq", "softq_lambda"]
ENV_ID = "CartPole-v1"

# Small hyperparameters (rl-zoo3 ``-params``) so that a few hundred steps include some gradient steps
SMALL_PARAMS = {
    "softq": [
        "learning_starts:100",
        "buffer_size:1000",
        "batch_size:16",
        "train_freq:4",
        "gradient_steps:1",
        "target_update_interval:50",
        "policy_kwargs:dict(net_arch=[16])",
    ],
    "softq_lambda": [
        "learning_starts:100",
        "buffer_size:1000",
        "batch_size:4",
        "sequence_length:4",
        "train_freq:4",
        "gradient_steps:1",
        "target_update_interval:50",
        "policy_kwargs:dict(net_arch=[16])",
    ],
}
# For hyperparameter optimisation: only what the samplers do not sample
SMALL_OPTIM_PARAMS = ["learning_starts:100", "buffer_size:1000"]


def run_zoo_unchecked(
    *args: str, cwd: Path, pythonpath: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sb3_softq.zoo <args>`` in ``cwd``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "sb3_softq.zoo", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_zoo(*args: str, cwd: Path, pythonpath: Path | None = None, timeout: float = 120) -> str:
    """Run ``python -m sb3_softq.zoo <args>`` in ``cwd``, check that it succeeds and return its output."""
    result = run_zoo_unchecked(*args, cwd=cwd, pythonpath=pythonpath, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def load_yaml(path: Path) -> Any:
    with open(path) as file:
        return yaml.load(file, Loader=yaml.UnsafeLoader)


def optimize_args(algo: str, storage: str, study_name: str, n_trials: int, seed: int) -> list[str]:
    return [
        "train", "--algo", algo, "--env", ENV_ID, "-f", "logs", "-optimize",
        "--n-trials", str(n_trials), "-n", "200", "--n-evaluations", "1", "--eval-episodes", "1",
        "--sampler", "random", "--pruner", "none", "--no-optim-plots", "--seed", str(seed),
        "--storage", storage, "--study-name", study_name,
        "-params", *SMALL_OPTIM_PARAMS,
    ]  # fmt: skip


def test_register_is_idempotent() -> None:
    register()
    register()
    for name, algo_class in ZOO_ALGOS.items():
        assert rl_zoo3.ALGOS[name] is algo_class
        assert hyperparams_opt.HYPERPARAMS_SAMPLER[name] is HYPERPARAMS_SAMPLER[name]
        assert hyperparams_opt.HYPERPARAMS_CONVERTER[name] is HYPERPARAMS_CONVERTER[name]
    assert ZOO_ALGOS == {"softq": SoftQ, "softq_lambda": SoftQLambda}
    # rl-zoo3's own algorithms are still there, and its ExperimentManager is left as it is
    assert "dqn" in rl_zoo3.ALGOS
    assert ExperimentManager.__init__.__module__ == "rl_zoo3.exp_manager"
    assert not hasattr(ExperimentManager.__init__, "__wrapped__")
    assert issubclass(ZooExperimentManager, ExperimentManager)


def test_cli_lists_our_algorithms(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as excinfo:
        main(["train", "--help"])
    assert excinfo.value.code == 0
    help_text = capsys.readouterr().out
    assert "softq_lambda" in help_text and "dqn" in help_text
    with pytest.raises(SystemExit, match="Unknown command"):
        main(["not_a_command"])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_starts(command: str, tmp_path: Path) -> None:
    """Each command imports rl-zoo3's script and parses its flags, except push_to_hub with a huggingface_sb3 that
    rl-zoo3 2.9's script cannot import, which says what to install."""
    if command == "push_to_hub" and not hasattr(importlib.import_module("huggingface_sb3.push_to_hub"), "generate_metadata"):
        result = run_zoo_unchecked(command, "--help", cwd=tmp_path)
        assert result.returncode == 1
        assert 'pip install "sb3-team-hf-integration<3.2"' in result.stderr and "Traceback" not in result.stderr
        return
    assert "usage" in run_zoo(command, "--help", cwd=tmp_path).lower()


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_default_conf_file(algo: str, tmp_path: Path) -> None:
    register()
    manager = ZooExperimentManager(argparse.Namespace(), algo, ENV_ID, str(tmp_path))
    assert manager.config == hyperparams_path(algo)
    assert Path(manager.config).is_file()
    hyperparams = load_yaml(Path(manager.config))
    assert {"default", "atari", "CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"} <= set(hyperparams)
    # An explicit config file is kept, and other algorithms are untouched
    assert ZooExperimentManager(argparse.Namespace(), algo, ENV_ID, str(tmp_path), config="my.yml").config == "my.yml"
    dqn_config = str(Path(rl_zoo3.__file__).parent / "hyperparams" / "dqn.yml")
    assert ZooExperimentManager(argparse.Namespace(), "dqn", ENV_ID, str(tmp_path)).config == dqn_config
    # rl-zoo3's own manager keeps its own default
    assert ExperimentManager(argparse.Namespace(), algo, ENV_ID, str(tmp_path)).config.startswith(
        str(Path(rl_zoo3.__file__).parent)
    )


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_hyperparams_files_build_models(algo: str) -> None:
    """Every entry of the yml files (but Atari) builds a model with the entry's values."""
    env_ids = [env_id for env_id in load_yaml(Path(hyperparams_path(algo))) if env_id not in ("default", "atari")]
    assert {"CartPole-v1", "Acrobot-v1", "MountainCar-v0", "LunarLander-v3"} <= set(env_ids)
    for env_id in env_ids:
        entry = load_yaml(Path(hyperparams_path(algo)))[env_id]
        policy, kwargs, n_timesteps = load_hyperparams(algo, env_id)
        assert (policy, n_timesteps) == (entry["policy"], int(entry["n_timesteps"]))
        model = ZOO_ALGOS[algo](policy, env_id, **{**kwargs, "buffer_size": 100})
        assert model.buffer_size == 100
        for key in ["gamma", "batch_size", "learning_starts", "gradient_steps", "target_update_interval", "n_critics",
                    "sequence_length", "trace_lambda", "trace"]:  # fmt: skip
            if key in entry:
                assert getattr(model, key) == entry[key], (env_id, key)
        if isinstance(entry.get("learning_rate"), float):
            assert model.lr_schedule(1.0) == pytest.approx(entry["learning_rate"]), env_id
        if "policy_kwargs" in entry:
            assert model.policy.net_arch == eval(entry["policy_kwargs"])["net_arch"], env_id
        if "train_freq" in entry:
            assert model.train_freq.frequency == entry["train_freq"], env_id


def test_load_hyperparams_reads_entries_as_rl_zoo3_does(tmp_path: Path) -> None:
    """``policy_kwargs`` is evaluated with rl-zoo3's names (``nn``, ``th``), ``lin_<value>`` becomes a schedule."""
    path = tmp_path / "softq.yml"
    entry = {
        "n_timesteps": 1e3,
        "policy": "MlpPolicy",
        "n_envs": 1,
        "learning_rate": "lin_1e-3",
        "train_freq": [1, "episode"],
        "policy_kwargs": "dict(net_arch=[8], activation_fn=nn.Tanh, optimizer_class=th.optim.RMSprop)",
        "replay_buffer_kwargs": "dict(handle_timeout_termination=False)",
    }
    path.write_text(yaml.safe_dump({ENV_ID: entry}))
    policy, kwargs, n_timesteps = load_hyperparams("softq", ENV_ID, str(path))
    assert (policy, n_timesteps) == ("MlpPolicy", 1000)
    assert kwargs["policy_kwargs"]["activation_fn"] is nn.Tanh
    assert kwargs["learning_rate"](0.5) == pytest.approx(5e-4)
    assert kwargs["train_freq"] == (1, "episode")
    model = SoftQ(policy, ENV_ID, **kwargs)
    assert isinstance(model.policy.optimizer, th.optim.RMSprop)
    assert not model.replay_buffer.handle_timeout_termination
    # Entries that need rl-zoo3's environment set-up are refused rather than trained differently
    for extra in (dict(n_envs=4), dict(env_kwargs=dict(render_mode=None)), dict(normalize=True)):
        path.write_text(yaml.safe_dump({ENV_ID: {**entry, **extra}}))
        with pytest.raises(ValueError, match=next(iter(extra))):
            load_hyperparams("softq", ENV_ID, str(path))


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_load_hyperparams_falls_back_as_rl_zoo3_does(algo: str, tmp_path: Path) -> None:
    """An environment without an entry takes ``default`` (``atari`` for Atari games, which needs rl-zoo3's wrappers)."""
    with open(hyperparams_path(algo)) as handle:
        default = yaml.safe_load(handle)["default"]
    policy, kwargs, n_timesteps = load_hyperparams(algo, "FrozenLake-v1")
    assert (policy, n_timesteps) == (default["policy"], int(default["n_timesteps"]))
    assert kwargs == {key: value for key, value in default.items() if key not in ("policy", "n_timesteps")}
    path = tmp_path / "only_cartpole.yml"
    path.write_text(yaml.safe_dump({ENV_ID: {"policy": "MlpPolicy", "n_timesteps": 100}}))
    with pytest.raises(ValueError, match="default"):
        load_hyperparams(algo, "FrozenLake-v1", str(path))


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_samplers(algo: str) -> None:
    """Sampled values come from ``trial.params`` only (``--trial-id`` reproduces them) and are within their ranges."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    seen_traces, seen_modes, seen_munchausen = set(), set(), set()
    for _ in range(16):
        trial = study.ask()
        sampled = HYPERPARAMS_SAMPLER[algo](trial, 0, 1, {"using_her_replay_buffer": False, "her_kwargs": {}})
        assert sampled == HYPERPARAMS_CONVERTER[algo](dict(trial.params))
        assert 0 < sampled["gamma"] < 1
        assert sampled["gradient_steps"] >= 1
        assert isinstance(sampled["policy_kwargs"]["net_arch"], list)
        seen_modes.add(sampled["ent_coef"] == "auto")
        if sampled["ent_coef"] == "auto":
            assert 0 < sampled["target_entropy"] < 0.7
        else:  # replaces a target entropy of the YAML entry, which a fixed temperature would ignore
            assert sampled["target_entropy"] == "auto"
            assert 1e-3 <= sampled["ent_coef"] <= 1
        # The Munchausen term: off or on, with the algorithm's default clip
        assert sampled["munchausen_coef"] in (0.0, 0.9) and "munchausen_clip" not in sampled
        seen_munchausen.add(sampled["munchausen_coef"])
        if algo == "softq_lambda":
            assert sampled["trace"] in TRACES
            seen_traces.add(sampled["trace"])
            assert 0.5 <= sampled["trace_lambda"] <= 1
            assert sampled["sequence_length"] in (4, 8, 16, 32)
        study.tell(trial, 0.0)
    assert seen_modes == {True, False}
    assert seen_munchausen == {0.0, 0.9}
    if algo == "softq_lambda":
        assert len(seen_traces) > 1
        # Every trace of the registry can be sampled
        assert trial.distributions["trace"].choices == TRACES  # type: ignore[attr-defined]


def test_enqueued_trial_gives_the_lunar_lander_entry() -> None:
    """The raw parameters enqueued in ``docs/zoo.md`` ("Starting a study from known values") sample the
    ``LunarLander-v3`` entry of ``softq_lambda.yml``."""
    study = optuna.create_study(direction="maximize")
    study.enqueue_trial(
        dict(one_minus_gamma=0.01, batch_size_pow=4, learning_rate=4.8e-4, train_freq=4, subsample_steps=2,
             target_update_interval=250, net_arch="medium", n_critics=1, ent_coef_mode="auto", target_entropy=0.414,
             trace_lambda=0.733, sequence_length_pow=4, trace="tree_backup", munchausen_coef=0.9)
    )  # fmt: skip
    sampled = HYPERPARAMS_SAMPLER["softq_lambda"](study.ask(), 0, 1, {})
    entry = load_yaml(Path(hyperparams_path("softq_lambda")))["LunarLander-v3"]
    assert sampled.pop("policy_kwargs") == eval(entry["policy_kwargs"])
    assert sampled.pop("gamma") == pytest.approx(entry["gamma"])
    assert sampled == {key: entry[key] for key in sampled}


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_enjoy_loads_with_minimal_buffer(algo: str, tmp_path: Path) -> None:
    register()
    model = ZOO_ALGOS[algo]("MlpPolicy", ENV_ID, buffer_size=10_000, learning_starts=10, policy_kwargs=dict(net_arch=[16]))
    model.save(tmp_path / "model.zip")
    with minimal_replay_buffer():
        loaded = rl_zoo3.ALGOS[algo].load(tmp_path / "model.zip")
    assert type(loaded) is ZOO_ALGOS[algo]
    assert rl_zoo3.ALGOS[algo] is ZOO_ALGOS[algo]
    assert loaded.replay_buffer is not None
    assert loaded.replay_buffer.buffer_size <= 2
    # The model keeps its own buffer size: saved again (as push_to_hub does), it trains with it when loaded later
    assert loaded.buffer_size == 10_000
    loaded.save(tmp_path / "saved_again.zip")
    assert ZOO_ALGOS[algo].load(tmp_path / "saved_again.zip").replay_buffer.buffer_size == 10_000
    # Explicit arguments still win
    with minimal_replay_buffer():
        explicit = rl_zoo3.ALGOS[algo].load(tmp_path / "model.zip", buffer_size=50)
    assert explicit.buffer_size == 50 and explicit.replay_buffer.buffer_size == 50


@pytest.mark.parametrize("algo", ALGO_NAMES)
def test_train_then_enjoy(algo: str, tmp_path: Path) -> None:
    output = run_zoo(
        "train", "--algo", algo, "--env", ENV_ID, "-n", "300", "-f", "logs", "--seed", "0", "--eval-freq", "-1",
        "-params", *SMALL_PARAMS[algo],
        cwd=tmp_path,
    )  # fmt: skip
    # No -conf: the package's hyperparams/<algo>.yml
    assert f"Loading hyperparameters from: {hyperparams_path(algo)}" in output
    run_dir = tmp_path / "logs" / algo / f"{ENV_ID}_1"
    assert (run_dir / f"{ENV_ID}.zip").is_file()
    config = dict(load_yaml(run_dir / ENV_ID / "config.yml"))
    assert config["learning_starts"] == 100
    with open(hyperparams_path(algo)) as handle:
        assert config["ent_coef"] == yaml.safe_load(handle)[ENV_ID]["ent_coef"]  # from the package's file
    assert load_yaml(run_dir / ENV_ID / "args.yml")["conf_file"] is None

    output = run_zoo(
        "enjoy", "--algo", algo, "--env", ENV_ID, "-f", "logs", "--no-render", "-n", "50", "--seed", "0", cwd=tmp_path
    )
    assert f"Loading {Path('logs') / algo / f'{ENV_ID}_1' / f'{ENV_ID}.zip'}" in output


@pytest.fixture(scope="module", params=ALGO_NAMES)
def optimized_study(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, str]:
    """A two-trial optimisation stored in sqlite: (algo, folder, storage URL)."""
    algo = request.param
    folder = tmp_path_factory.mktemp(f"optimize_{algo}")
    storage = f"sqlite:///{folder / 'study.db'}"
    run_zoo(*optimize_args(algo, storage, "study", n_trials=2, seed=0), cwd=folder)
    return algo, folder, storage


def test_optimize_writes_report(optimized_study: tuple[str, Path, str]) -> None:
    algo, folder, storage = optimized_study
    reports = list((folder / "logs" / algo).glob(f"report_{ENV_ID}_2-trials-200-random-none_*.csv"))
    assert len(reports) == 1
    import pandas as pd

    report = pd.read_csv(reports[0])
    assert list(report["state"]) == ["COMPLETE", "COMPLETE"]
    study = optuna.load_study(study_name="study", storage=storage)
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 2


@pytest.mark.parametrize("trial_id", [0, 1])
def test_trial_id_reproduces_sampled_hyperparams(optimized_study: tuple[str, Path, str], trial_id: int) -> None:
    algo, folder, storage = optimized_study
    study = optuna.load_study(study_name="study", storage=storage)
    expected = HYPERPARAMS_CONVERTER[algo](study.trials[trial_id].params)

    log_folder = f"reload_{trial_id}"
    run_zoo(
        "train", "--algo", algo, "--env", ENV_ID, "-n", "150", "-f", log_folder, "--eval-freq", "-1",
        "--storage", storage, "--study-name", "study", "--trial-id", str(trial_id), "-params", *SMALL_OPTIM_PARAMS,
        cwd=folder,
    )  # fmt: skip
    params_dir = folder / log_folder / algo / f"{ENV_ID}_1" / ENV_ID
    config = dict(load_yaml(params_dir / "config.yml"))
    for key, value in expected.items():
        if key == "policy_kwargs":
            # The algorithm may add its own entries to the policy_kwargs dict it is given
            assert {name: config[key][name] for name in value} == value
        else:
            assert config[key] == value, key
    args = load_yaml(params_dir / "args.yml")
    assert (args["trial_id"], args["study_name"], args["storage"]) == (trial_id, "study", storage)


@pytest.mark.parametrize("storage_kind", ["journal", "sqlite"])
def test_distributed_workers_share_one_study(storage_kind: str, tmp_path: Path) -> None:
    """Two workers started at the same time on one storage both complete trials of the same study."""
    algo = "softq"
    if storage_kind == "journal":
        storage = str(tmp_path / "study.log")
    else:
        storage = f"sqlite:///{tmp_path / 'study.db'}"
        # As recommended for RDB storages: create the study (and its tables) once, before starting the workers
        optuna.create_study(storage=storage, study_name="shared", direction="maximize")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    workers = []
    for worker in range(2):
        worker_dir = tmp_path / f"worker_{worker}"
        worker_dir.mkdir()
        args = optimize_args(algo, storage, "shared", n_trials=1, seed=worker + 1)
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "sb3_softq.zoo", *args],
                cwd=worker_dir,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    for process in workers:
        output, _ = process.communicate(timeout=120)
        assert process.returncode == 0, output
        assert "Number of finished trials:" in output

    if storage_kind == "journal":
        loaded_storage: Any = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    else:
        loaded_storage = storage
    study = optuna.load_study(study_name="shared", storage=loaded_storage)
    trials = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(trials) == 2
    assert trials[0].params != trials[1].params


def test_wheel_ships_hyperparams(tmp_path: Path) -> None:
    """The wheel contains hyperparams/<algo>.yml (same content as the top-level files) and uses them by default."""
    # Built offline, without build isolation: the build backend must be installed
    pytest.importorskip("setuptools", minversion="64", reason="building the wheel offline needs setuptools>=64")
    source = tmp_path / "source"
    source.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO_ROOT / "sb3_softq", source / "sb3_softq", symlinks=True, ignore=ignore)
    shutil.copytree(REPO_ROOT / "hyperparams", source / "hyperparams", ignore=ignore)
    for name in ["pyproject.toml", "README.md", "LICENSE"]:
        if (REPO_ROOT / name).is_file():
            shutil.copy(REPO_ROOT / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", "dist", "./source"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        timeout=120,
    )
    (wheel,) = (tmp_path / "dist").glob("sb3_softq-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        for algo in ALGO_NAMES:
            assert (
                archive.read(f"sb3_softq/hyperparams/{algo}.yml") == (REPO_ROOT / "hyperparams" / f"{algo}.yml").read_bytes()
            )
        assert "sb3_softq/zoo/__main__.py" in archive.namelist()
        archive.extractall(tmp_path / "site")

    # Run from the unpacked wheel: without -conf, the wheel's own file is used
    output = run_zoo(
        "train", "--algo", "softq", "--env", ENV_ID, "-n", "50", "-f", "logs", "--eval-freq", "-1",
        "-params", "buffer_size:100",
        cwd=tmp_path, pythonpath=tmp_path / "site",
    )  # fmt: skip
    assert f"Loading hyperparameters from: {tmp_path / 'site' / 'sb3_softq' / 'hyperparams' / 'softq.yml'}" in output


# Command line errors: a message naming what to change, a non-zero status, no traceback


@pytest.mark.parametrize("blocked", ["rl_zoo3", "optuna"])
@pytest.mark.parametrize("entry_point", ["module", "script"])
def test_missing_zoo_extra_says_what_to_install(blocked: str, entry_point: str, tmp_path: Path) -> None:
    """Without the ``zoo`` extra (here: one of its modules made unimportable), ``python -m sb3_softq.zoo`` and the
    ``sb3-softq`` script (``sb3_softq.zoo.cli:main``) name the extra instead of failing on an import."""
    run = {
        "module": "import runpy; runpy.run_module('sb3_softq.zoo', run_name='__main__', alter_sys=True)",
        "script": "from sb3_softq.zoo.cli import main; sys.exit(main())",
    }[entry_point]
    code = f"import sys; sys.modules[{blocked!r}] = None; sys.argv = ['sb3-softq', 'train', '--algo', 'softq']; {run}"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert 'pip install "sb3_softq[zoo]"' in result.stderr
    assert blocked in result.stderr and "Traceback" not in result.stderr
    # From Python, the names of sb3_softq.zoo say the same when first used
    code = f"import sys; sys.modules[{blocked!r}] = None\nfrom sb3_softq.zoo import register"
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    hint = 'the rl-zoo3 integration needs the `zoo` extra: pip install "sb3_softq[zoo]"'
    assert f"ModuleNotFoundError: sb3_softq.zoo.register: {hint}" in result.stderr


def zoo_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``main(args)`` in this process, check that it exits with status 2 and return its error message."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as excinfo:
        main(list(args))
    assert excinfo.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith(f"sb3_softq.zoo {args[0]}: error: ") and "Traceback" not in error
    return error


@pytest.mark.parametrize(
    "flags, message",
    [
        (["-optimize", "--n-trials", "0"], "--n-trials must be at least 1 with -optimize, got 0"),
        (["-optimize", "--n-trials", "-3"], "--n-trials must be at least 1 with -optimize, got -3"),
        (["-optimize", "--max-total-trials", "0"], "--max-total-trials must be at least 1, got 0"),
        (["--trial-id", "3"], "--trial-id needs the --storage and --study-name"),
        (["--trial-id", "0", "--storage", "sqlite:///study.db"], "--trial-id needs the --storage and --study-name"),
        (["-optimize", "--heartbeat-interval", "5"], "--heartbeat-interval needs a relational database --storage"),
        (["-optimize", "--storage", "study.log", "--heartbeat-interval", "5"], "--heartbeat-interval needs a relational"),
        (["-optimize", "--storage", "sqlite:///s.db", "--heartbeat-interval", "0"], "--heartbeat-interval must be a positive"),
        (["-optimize", "--storage", "sqlite:///s.db", "--grace-period", "10"], "--grace-period needs --heartbeat-interval"),
    ],
)
def test_bad_arguments_are_named(
    flags: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert message in zoo_error(monkeypatch, capsys, "train", "--algo", "softq", "--env", ENV_ID, *flags)
    assert not (tmp_path / "logs").exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("- CartPole-v1\n- Acrobot-v1\n", "its top level is a list"),
        ("just a string\n", "its top level is a str"),
        ("", "its top level is a NoneType"),
        ("CartPole-v1: [1, 2]\n", "The entry 'CartPole-v1' of the hyperparameter file"),
        ("CartPole-v1: {policy: [\n", "is not valid YAML"),
    ],
)
def test_bad_conf_file_is_named(
    content: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yml").write_text(content)
    error = zoo_error(monkeypatch, capsys, "train", "--algo", "softq_lambda", "--env", ENV_ID, "-conf", "bad.yml")
    assert message in error and "bad.yml" in error


def test_missing_conf_file_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    error = zoo_error(monkeypatch, capsys, "train", "--algo", "softq", "--env", ENV_ID, "-conf", "missing.yml")
    assert "Cannot read the hyperparameter file missing.yml: No such file or directory" in error


def test_train_help_lists_our_flags(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    with pytest.raises(SystemExit) as excinfo:
        main(["train", "--help"])
    assert excinfo.value.code == 0
    help_text = capsys.readouterr().out
    assert "--heartbeat-interval" in help_text and "--grace-period" in help_text and "--n-trials" in help_text


def test_record_training_records_through_our_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each model of the run (final, best, checkpoints) is recorded by this interpreter's ``sb3_softq.zoo record_video``
    (rl-zoo3's script starts ``python -m rl_zoo3.record_video``), then the videos are joined with ffmpeg."""
    from sb3_softq.zoo import record_training

    run_dir = tmp_path / "logs" / "softq" / f"{ENV_ID}_1"
    run_dir.mkdir(parents=True)
    for name in [f"{ENV_ID}.zip", "best_model.zip", "rl_model_200_steps.zip", "rl_model_100_steps.zip"]:
        (run_dir / name).touch()
    calls: list[list[str]] = []

    def call(command: list[str]) -> int:
        calls.append([str(part) for part in command])
        return 0

    monkeypatch.setattr(record_training.subprocess, "call", call)
    monkeypatch.setattr(sys, "argv", ["record_training", "--algo", "softq", "--env", ENV_ID, "-f", str(tmp_path / "logs")])
    register()
    record_training.record_training()
    recordings = [command for command in calls if command[:4] == [sys.executable, "-m", "sb3_softq.zoo", "record_video"]]
    assert len(recordings) == 4 and all("--exp-id" in command and "1" in command for command in recordings)
    assert recordings[1][-1] == "--load-best"
    assert [command[-2:] for command in recordings[2:]] == [["--load-checkpoint", "100"], ["--load-checkpoint", "200"]]
    assert all(command[0] == "ffmpeg" for command in calls[4:])
    assert (run_dir / "videos").is_dir()
    assert f"Saving video to {run_dir.resolve() / 'videos' / 'training.mp4'}" in capsys.readouterr().out
    # A failed recording stops the command with a message
    monkeypatch.setattr(record_training.subprocess, "call", lambda command: 1)
    with pytest.raises(SystemExit, match="Failed to record the final model"):
        record_training.record_training()
