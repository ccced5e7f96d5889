"""The learning benchmark's ``--reuse``: which earlier runs it takes, which it trains again, which merges it refuses."""

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_learning

ENV_ID = "CartPole-v1"
# A run short enough to train in the test: 600 steps, evaluated every 300 steps on 2 episodes
SETTINGS = ["--env", ENV_ID, "--algos", "softq", "--seeds", "1", "--workers", "1", "--n-timesteps", "600"]
SETTINGS += ["--eval-freq", "300", "--eval-episodes", "2"]


def results_file(path: Path, returns: list[float], hyperparameters: dict | None = None) -> str:
    """An earlier results file holding one SoftQ run (seed 0) with the given evaluation returns."""
    run = {
        "algo": "softq",
        "env": ENV_ID,
        "seed": 0,
        "timesteps": [300, 600],
        "returns": returns,
        "seconds": 1.0,
        "n_timesteps": 600,
        "eval_episodes": 2,
        "hyperparameters": hyperparameters or bench_learning.zoo_entry("softq", ENV_ID),
    }
    meta = {"command": "bench_learning.py eval_episodes=2 ...", "versions": bench_learning.versions()}
    path.write_text(json.dumps({"meta": meta, "runs": [run]}))
    return str(path)


def run_benchmark(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, *extra: str) -> dict:
    out = tmp_path / "out"
    monkeypatch.setattr(sys, "argv", ["bench_learning.py", *SETTINGS, "--out", str(out), *extra])
    bench_learning.main()
    return json.loads((tmp_path / "out.json").read_text())


def test_reuse_takes_runs_of_the_same_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    earlier = results_file(tmp_path / "earlier.json", [1.0, 2.0])
    results = run_benchmark(monkeypatch, tmp_path, "--reuse", earlier)
    assert results["runs"][0]["returns"] == [1.0, 2.0]
    assert results["meta"]["reused"]["runs"] == ["softq seed 0"]


def test_reuse_trains_again_runs_of_another_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    other_entry = {**bench_learning.zoo_entry("softq", ENV_ID), "learning_rate": 0.5}
    earlier = results_file(tmp_path / "earlier.json", [1.0, 2.0], hyperparameters=other_entry)
    results = run_benchmark(monkeypatch, tmp_path, "--reuse", earlier)
    (run,) = results["runs"]
    assert run["returns"] != [1.0, 2.0] and len(run["returns"]) == 2
    assert run["hyperparameters"] == bench_learning.zoo_entry("softq", ENV_ID)
    assert "reused" not in results["meta"]


def test_reuse_refuses_files_that_disagree(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    first = results_file(tmp_path / "first.json", [1.0, 2.0])
    second = results_file(tmp_path / "second.json", [3.0, 4.0])
    with pytest.raises(ValueError, match="softq seed 0 differs"):
        run_benchmark(monkeypatch, tmp_path, "--reuse", first, second)
    # the same run in both files is fine
    same = results_file(tmp_path / "same.json", [1.0, 2.0])
    assert run_benchmark(monkeypatch, tmp_path, "--reuse", first, same)["runs"][0]["returns"] == [1.0, 2.0]


def test_reuse_refuses_other_versions(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.json"
    results_file(earlier, [1.0, 2.0])
    content = json.loads(earlier.read_text())
    content["meta"]["versions"]["torch"] = "0.0.1"
    earlier.write_text(json.dumps(content))
    with pytest.raises(ValueError, match="other versions"):
        bench_learning.reusable_runs(str(earlier), ENV_ID, 300, 2)


def test_runs_resume_from_their_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A run stopped after an evaluation goes on from its checkpoint (model, replay buffer, evaluations so far)."""
    checkpoints = str(tmp_path / "checkpoints")
    os.makedirs(checkpoints)
    # Stopped after its first evaluation: what a run of 600 steps killed between 300 and 600 leaves behind
    first_part = bench_learning.run_one("softq", ENV_ID, 0, 300, 2, 300, checkpoints)
    paths = bench_learning.checkpoint_paths(checkpoints, "softq", ENV_ID, 0)
    assert all(os.path.exists(path) for path in paths.values())
    run = bench_learning.run_one("softq", ENV_ID, 0, 300, 2, 600, checkpoints)
    assert run["timesteps"] == [300, 600] and run["resumed_at"] == [300]
    assert run["returns"][0] == first_part["returns"][0]
    # Through the command line: the finished run's checkpoint is removed
    results = run_benchmark(monkeypatch, tmp_path, "--checkpoints", checkpoints)
    assert results["runs"][0]["resumed_at"] == [300, 600]  # its checkpoint was already complete
    assert not any(os.path.exists(path) for path in paths.values())
    assert "resumed from a checkpoint" in (tmp_path / "out.md").read_text()
