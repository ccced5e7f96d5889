"""
Faults of the rl-zoo3 integration: a training run killed between checkpoints resumes with rl-zoo3's ``-i`` and
loses only the steps after the last checkpoint; distributed tuning on a PostgreSQL server survives a killed worker.
"""

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch as th

pytest.importorskip("rl_zoo3")

import optuna
from rl_zoo3.exp_manager import ExperimentManager as RLZooExperimentManager

from sb3_softq import SoftQLambda
from sb3_softq.zoo import ExperimentManager, hyperparams_path, register
from sb3_softq.zoo.cli import main

ENV_ID = "CartPole-v1"
# Fast hyperparameters: gradient steps from step 100 on, a learned temperature (log_ent_coef and its optimiser)
RESUME_PARAMS = {
    "learning_starts": 100,
    "buffer_size": 2000,
    "batch_size": 4,
    "sequence_length": 4,
    "train_freq": 4,
    "gradient_steps": 1,
    "target_update_interval": 50,
    "policy_kwargs": dict(net_arch=[16]),
    "learning_rate": 1e-3,
    "ent_coef": "auto",
}
SAVE_FREQ = 200


def zoo_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg")


def params_flags(params: dict[str, Any]) -> list[str]:
    """rl-zoo3's ``-params`` flags (values are Python expressions)"""
    return ["-params", *(f"{key}:{value!r}" for key, value in params.items())]


def wait_for(
    condition: Callable[[], bool], process: subprocess.Popen, timeout: float, what: str, log: Path | None = None
) -> None:
    """Wait until ``condition()`` holds, failing if ``process`` (its output in ``log`` or its pipe) ends first or after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            output = log.read_text() if log is not None else process.stdout.read() if process.stdout is not None else ""
            pytest.fail(f"The process ended (status {process.returncode}) before {what}:\n{output}")
        if time.monotonic() > deadline:
            pytest.fail(f"Timed out waiting for {what}")
        time.sleep(0.05)


@contextlib.contextmanager
def killed_on_exit(process: subprocess.Popen) -> Iterator[subprocess.Popen]:
    """Make sure that ``process`` does not outlive the test."""
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def assert_same_state_dict(actual: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal optimiser / module state dicts (tensors compared exactly)."""
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, th.Tensor):
            assert th.equal(actual[key], value), key
        elif isinstance(value, dict):
            assert_same_state_dict(actual[key], value)
        elif isinstance(value, list):
            assert len(actual[key]) == len(value)
            for actual_item, item in zip(actual[key], value, strict=True):
                if isinstance(item, dict):
                    assert_same_state_dict(actual_item, item)
                else:
                    assert actual_item == item, key
        else:
            assert actual[key] == value, key


def test_killed_training_resumes_from_its_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """
    A run killed (SIGKILL) after a ``--save-freq`` checkpoint resumes with rl-zoo3's ``-i <checkpoint>.zip``: the time
    step count, the temperature, the optimisers and the replay buffer (the checkpoint's, saved beside it with
    ``--save-replay-buffer``) are those of the checkpoint, and the resumed run keeps counting from there.
    """
    register()
    monkeypatch.chdir(tmp_path)
    flags = ["--algo", "softq_lambda", "--env", ENV_ID, "--eval-freq", "-1", "--log-interval", "-2"]
    flags += ["--save-freq", str(SAVE_FREQ), "--save-replay-buffer", *params_flags(RESUME_PARAMS)]

    # 1. A long run, killed once its second checkpoint is complete (the third one has started)
    run_dir = tmp_path / "logs" / "softq_lambda" / f"{ENV_ID}_1"
    checkpoint = run_dir / f"rl_model_{2 * SAVE_FREQ}_steps.zip"
    checkpoint_buffer = run_dir / f"rl_model_replay_buffer_{2 * SAVE_FREQ}_steps.pkl"
    command = [sys.executable, "-m", "sb3_softq.zoo", "train", *flags, "-n", "100000", "-f", "logs", "--seed", "0"]
    process = subprocess.Popen(command, env=zoo_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with killed_on_exit(process):
        # The buffer of a checkpoint is written after its model, and before the next checkpoint's model
        wait_for((run_dir / f"rl_model_{3 * SAVE_FREQ}_steps.zip").exists, process, 120, "the third checkpoint")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    assert checkpoint.is_file() and checkpoint_buffer.is_file()
    assert not (run_dir / f"{ENV_ID}.zip").exists()  # killed: no final model

    # What the checkpoint holds, loaded with SB3's own functions
    reference = SoftQLambda.load(checkpoint)
    reference.load_replay_buffer(checkpoint_buffer)
    assert reference.num_timesteps == 2 * SAVE_FREQ
    assert reference.ent_coef_optimizer is not None and reference._n_updates > 0

    # 2. rl-zoo3's resume path, as `train -i <checkpoint>` takes it, up to the model it trains
    args = argparse.Namespace(algo="softq_lambda", env=ENV_ID)
    manager = ExperimentManager(
        args, "softq_lambda", ENV_ID, "resumed", n_timesteps=SAVE_FREQ, eval_freq=-1, save_freq=SAVE_FREQ,
        hyperparams=dict(RESUME_PARAMS), trained_agent=str(checkpoint), save_replay_buffer=True, seed=1,
        truncate_last_trajectory=True,  # train's default
    )  # fmt: skip
    model, _ = manager.setup_experiment()
    assert isinstance(model, SoftQLambda)
    assert model.num_timesteps == reference.num_timesteps
    assert model._n_updates == reference._n_updates
    assert th.equal(model.policy.temperature.log_ent_coef, reference.policy.temperature.log_ent_coef)
    assert_same_state_dict(model.policy.state_dict(), reference.policy.state_dict())
    assert_same_state_dict(model.policy.optimizer.state_dict(), reference.policy.optimizer.state_dict())
    assert_same_state_dict(model.ent_coef_optimizer.state_dict(), reference.ent_coef_optimizer.state_dict())
    # The replay buffer: same contents, and the same windows for the same random draws
    buffer, expected_buffer = model.replay_buffer, reference.replay_buffer
    assert buffer is not None and expected_buffer is not None
    # SB3's callbacks run between a step and its storage: a checkpoint's buffer holds the steps before its last one
    assert (buffer.pos, buffer.full) == (expected_buffer.pos, expected_buffer.full) == (2 * SAVE_FREQ - 1, False)
    for name in ["observations", "actions", "rewards", "dones", "timeouts", "behaviour_probs", "terminal_index"]:
        np.testing.assert_array_equal(getattr(buffer, name), getattr(expected_buffer, name), err_msg=name)
    for seed in range(3):
        np.random.seed(seed)
        windows = buffer.sample(8)
        np.random.seed(seed)
        expected_windows = expected_buffer.sample(8)
        for name, value in windows._asdict().items():
            if isinstance(value, th.Tensor):
                assert th.equal(value, getattr(expected_windows, name)), name
    # rl-zoo3's own manager loads only `replay_buffer.pkl`, which a killed run never wrote: an empty buffer
    upstream = RLZooExperimentManager(
        args, "softq_lambda", ENV_ID, "upstream", n_timesteps=SAVE_FREQ, eval_freq=-1, hyperparams=dict(RESUME_PARAMS),
        trained_agent=str(checkpoint), seed=1, config=hyperparams_path("softq_lambda"),
    )  # fmt: skip
    upstream_model, _ = upstream.setup_experiment()
    assert upstream_model.replay_buffer.size() == 0

    # 3. The command line resume: SAVE_FREQ more steps, counted from the checkpoint's
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    main(["train", *flags, "-n", str(SAVE_FREQ), "-f", "resumed_cli", "--seed", "1", "-i", str(checkpoint)])
    assert "Loading the checkpoint's replay buffer" in capsys.readouterr().out
    resumed_dir = tmp_path / "resumed_cli" / "softq_lambda" / f"{ENV_ID}_1"
    assert (resumed_dir / f"rl_model_{3 * SAVE_FREQ}_steps.zip").is_file()
    resumed = SoftQLambda.load(resumed_dir / f"{ENV_ID}.zip")
    assert resumed.num_timesteps == 3 * SAVE_FREQ
    resumed.load_replay_buffer(resumed_dir / "replay_buffer.pkl")
    assert resumed.replay_buffer.pos == 3 * SAVE_FREQ - 1
    # Nothing lost: the checkpoint's transitions come first, then the new ones
    n_kept = 2 * SAVE_FREQ - 1
    for name in ["observations", "actions", "rewards", "dones"]:
        np.testing.assert_array_equal(
            getattr(resumed.replay_buffer, name)[:n_kept], getattr(expected_buffer, name)[:n_kept], err_msg=name
        )


# Distributed tuning on a PostgreSQL server


def postgres_bindir() -> Path | None:
    """:return: the folder of the PostgreSQL server programs (``initdb``, ``postgres``), or ``None`` when absent"""
    candidates = []
    if shutil.which("pg_config") is not None:
        result = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(Path(result.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    if shutil.which("initdb") is not None:
        candidates.append(Path(shutil.which("initdb")).parent)  # type: ignore[arg-type]
    for bindir in candidates:
        if (bindir / "initdb").is_file() and (bindir / "postgres").is_file():
            return bindir
    return None


def server_user() -> tuple[int, int] | None:
    """
    :return: ``(uid, gid)`` of an unprivileged user to run the server as when this process is root (PostgreSQL refuses
        to run as root): ``postgres`` (made by Debian's package), else a system user created for it; ``None`` when not
        root
    """
    if os.geteuid() != 0:
        return None
    import pwd

    for name in ["postgres", "sb3_softq_pg"]:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(name)
            return entry.pw_uid, entry.pw_gid
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "sb3_softq_pg"], check=True)
    entry = pwd.getpwnam("sb3_softq_pg")
    return entry.pw_uid, entry.pw_gid


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL server of its own, on 127.0.0.1 and a free port, in a temporary folder: its URL."""
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip(
            "PostgreSQL server programs (initdb, postgres) not found: install PostgreSQL, e.g. apt-get install postgresql"
        )
    import psycopg2  # the tests extra's psycopg2-binary, also Optuna's driver for postgresql:// URLs

    user = server_user()

    def as_server_user() -> None:
        if user is not None:
            os.setgroups([])
            os.setgid(user[1])
            os.setuid(user[0])

    # Not under pytest's tmp_path: its parent folders are private to root, and the server runs as another user
    folder = Path(tempfile.mkdtemp(prefix="sb3_softq_postgres_"))
    if user is not None:
        os.chown(folder, *user)
    data = folder / "data"
    port = free_port()
    env = dict(os.environ, LC_ALL="C", LANG="C")
    subprocess.run(
        [bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-locale"],
        preexec_fn=as_server_user, env=env, cwd=folder, capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    server = subprocess.Popen(
        [bindir / "postgres", "-D", data, "-h", "127.0.0.1", "-p", str(port), "-k", folder,
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
        preexec_fn=as_server_user, env=env, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    # SQLAlchemy 2.1 reads `postgresql://` as psycopg 3: name the driver
    url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown: ends the sessions still open
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def tuning_worker(url: str, study: str, n_trials: int, n_timesteps: int, seed: int, log: Path) -> subprocess.Popen:
    """A ``python -m sb3_softq.zoo train -optimize`` worker on the study, its output written to ``log``."""
    command = [
        sys.executable, "-m", "sb3_softq.zoo", "train", "--algo", "softq_lambda", "--env", ENV_ID, "-f", str(log.parent),
        "-optimize", "--storage", url, "--study-name", study, "--n-trials", str(n_trials), "-n", str(n_timesteps),
        "--n-evaluations", "1", "--eval-episodes", "1", "--sampler", "random", "--pruner", "none", "--no-optim-plots",
        "--seed", str(seed), "--heartbeat-interval", "1", "--grace-period", "3",
        "-params", "learning_starts:100", "buffer_size:1000",
    ]  # fmt: skip
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as output:
        return subprocess.Popen(command, env=zoo_env(), stdout=output, stderr=subprocess.STDOUT)


def finished(process: subprocess.Popen, log: Path, timeout: float) -> str:
    """Wait for a worker to end; check that it succeeded and return its output."""
    process.wait(timeout=timeout)
    output = log.read_text()
    assert process.returncode == 0, output
    assert "Number of finished trials:" in output
    return output


def test_distributed_tuning_survives_a_killed_worker(postgres_url: str, tmp_path: Path) -> None:
    """
    Two workers tune one study on a PostgreSQL server; one is killed (SIGKILL) in the middle of a trial. The other
    keeps going, the dead worker's trial is marked failed through its missing heartbeat (``--heartbeat-interval``,
    ``--grace-period``), the completed trials are intact, and a restarted worker continues the study.
    """
    study_name = "softq_lambda-killed-worker"
    optuna.create_study(storage=postgres_url, study_name=study_name, direction="maximize")

    def trials(*states: optuna.trial.TrialState) -> list[optuna.trial.FrozenTrial]:
        return optuna.load_study(study_name=study_name, storage=postgres_url).get_trials(deepcopy=False, states=states)

    running, complete = optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.COMPLETE
    logs = {name: tmp_path / name / "output.txt" for name in ["victim", "survivor", "restarted"]}
    # The victim: one long trial. The survivor, started once the victim's trial runs: short trials.
    victim = tuning_worker(postgres_url, study_name, 1, 1_000_000, seed=1, log=logs["victim"])
    with killed_on_exit(victim):
        wait_for(lambda: len(trials(running)) == 1, victim, 90, "the victim's trial", logs["victim"])
        (victim_trial,) = trials(running)
        survivor = tuning_worker(postgres_url, study_name, 3, 200, seed=2, log=logs["survivor"])
        with killed_on_exit(survivor):
            wait_for(lambda: len(trials(complete)) >= 1, survivor, 90, "the survivor's first trial", logs["survivor"])
            first_complete = trials(complete)
            assert victim.poll() is None  # still in its trial
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=30)
            # Restarted at once: it starts its trial after the grace period (its start-up takes longer), so the
            # victim's trial is marked failed by the survivor or, at the latest, by the restarted worker
            restarted = tuning_worker(postgres_url, study_name, 1, 200, seed=3, log=logs["restarted"])
            with killed_on_exit(restarted):
                finished(survivor, logs["survivor"], timeout=120)
                finished(restarted, logs["restarted"], timeout=120)

    study = optuna.load_study(study_name=study_name, storage=postgres_url)
    states = {trial.number: trial.state for trial in study.trials}
    assert states[victim_trial.number] == optuna.trial.TrialState.FAIL
    assert list(states.values()).count(complete) == 4  # the survivor's 3 and the restarted worker's 1
    assert len(states) == 5 and not study.get_trials(states=(running,))
    # The trials completed before the kill are unchanged
    for before in first_complete:
        after = study.trials[before.number]
        assert (after.state, after.value, after.params) == (complete, before.value, before.params)
    # Every completed trial has the parameters the sampler suggested, and a value
    for trial in study.get_trials(states=(complete,)):
        assert trial.value is not None and {"trace", "trace_lambda", "one_minus_gamma"} <= set(trial.params)
