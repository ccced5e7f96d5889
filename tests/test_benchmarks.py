"""The learning benchmark's ``--reuse``: which earlier runs it takes, which it trains again, which merges it refuses."""

import json
import os
import sys
from pathlib import Path

import pytest

from benchmarks import bench_learning

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
    # The training time goes on from the checkpoint's
    assert run["train_seconds"][0] == first_part["train_seconds"][0] < run["train_seconds"][1]
    # Through the command line: the finished run's checkpoint is removed
    results = run_benchmark(monkeypatch, tmp_path, "--checkpoints", checkpoints)
    assert results["runs"][0]["resumed_at"] == [300, 600]  # its checkpoint was already complete
    assert not any(os.path.exists(path) for path in paths.values())
    assert "resumed from a checkpoint" in (tmp_path / "out.md").read_text()


def test_columns_are_entries_with_variants() -> None:
    assert bench_learning.variant_overrides("dqn") == {}
    assert bench_learning.variant_overrides("dqn:n_steps=3") == {"n_steps": 3}
    assert bench_learning.variant_overrides("softq_lambda:retrace") == {"trace": "retrace"}
    assert bench_learning.variant_overrides("softq_lambda:munchausen") == {"munchausen_coef": 0.9}
    assert bench_learning.variant_overrides("softq_lambda:retrace,munchausen,trace_lambda=0.5") == {
        "trace": "retrace",
        "munchausen_coef": 0.9,
        "trace_lambda": 0.5,
    }
    with pytest.raises(ValueError, match="Unknown variant 'retrace'"):
        bench_learning.variant_overrides("dqn:retrace")
    with pytest.raises(ValueError, match="Unknown algorithm 'ppo'"):
        bench_learning.variant_overrides("ppo")
    # The entry recorded with each run: rl-zoo3's DQN entry with n_steps 3
    dqn_entry = bench_learning.zoo_entry("dqn", ENV_ID)
    assert "n_steps" not in dqn_entry
    assert bench_learning.zoo_entry("dqn:n_steps=3", ENV_ID) == {**dqn_entry, "n_steps": 3}
    # A column is defined by its keyword arguments, whether or not this version of the algorithm accepts them
    _, kwargs, _ = bench_learning.zoo_hyperparams("softq_lambda:munchausen", ENV_ID)
    assert kwargs["munchausen_coef"] == 0.9


def test_defaults_columns_train_with_the_constructor_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from sb3_softq import SoftQLambda

    policy, kwargs, n_timesteps = bench_learning.zoo_hyperparams("softq_lambda:defaults", ENV_ID)
    assert (policy, kwargs, n_timesteps) == ("MlpPolicy", {}, 0)
    assert bench_learning.zoo_hyperparams("softq_lambda:defaults,munchausen", ENV_ID)[1] == {"munchausen_coef": 0.9}
    # The recorded entry is the constructor's defaults: a changed default makes --reuse train the column again
    entry = bench_learning.zoo_entry("softq_lambda:defaults", ENV_ID)
    assert entry["learning_rate"] == SoftQLambda("MlpPolicy", ENV_ID).learning_rate
    assert entry["trace"] == "tree_backup" and "target_entropy_fraction" in entry
    # Without a zoo entry there is no budget: the command asks for one
    monkeypatch.setattr(sys, "argv", ["bench_learning.py", "--env", ENV_ID, "--algos", "dqn:defaults", "--out", "x"])
    with pytest.raises(SystemExit):
        bench_learning.main()
    data = run_benchmark(monkeypatch, tmp_path, "--algos", "dqn:defaults")
    assert data["runs"][0]["algo"] == "dqn:defaults" and data["runs"][0]["timesteps"] == [300, 600]


def test_dqn_with_three_step_returns() -> None:
    from stable_baselines3 import DQN
    from stable_baselines3.common.buffers import NStepReplayBuffer

    policy, kwargs, _ = bench_learning.zoo_hyperparams("dqn:n_steps=3", ENV_ID)
    model = DQN(policy, ENV_ID, **{**kwargs, "buffer_size": 100})
    assert isinstance(model.replay_buffer, NStepReplayBuffer) and model.replay_buffer.n_steps == 3


def test_runs_record_their_training_time() -> None:
    run = bench_learning.run_one("softq", ENV_ID, 0, 200, 1, 600)
    seconds = run["train_seconds"]
    assert len(seconds) == len(run["timesteps"]) == 3
    assert 0 < seconds[0] < seconds[1] < seconds[2] <= run["seconds"]


def test_seconds_to_threshold() -> None:
    def run(returns: list[float], train_seconds: list[float] | None = None) -> dict:
        return {
            "timesteps": [100, 200, 300],
            "returns": returns,
            "seconds": 9.0,
            **({} if train_seconds is None else {"train_seconds": train_seconds}),
        }

    timed = [run([0.0, 5.0, 5.0], [1.0, 2.0, 3.0]), run([5.0, 5.0, 5.0], [1.5, 2.5, 3.5]), run([0.0, 0.0, 0.0], [1, 2, 3])]
    summary = bench_learning.summarise(timed, threshold=5.0)
    assert summary["steps_to_threshold"] == [200, 100, None]
    assert summary["seconds_to_threshold"] == [2.0, 1.5, None]
    # Medians over the 3 seeds, the third counted as infinitely slow
    assert summary["median_steps_to_threshold"] == 200 and summary["median_seconds_to_threshold"] == 2.0
    assert bench_learning.threshold_text(summary, "median_seconds_to_threshold") == "2"
    # Runs without timing (older results files): "n/a"
    untimed = bench_learning.summarise([timed[0], {k: v for k, v in timed[1].items() if k != "train_seconds"}], 5.0)
    assert untimed["seconds_to_threshold"] is None and untimed["median_steps_to_threshold"] == 150
    # Fewer than half of the seeds reach it: none
    assert bench_learning.summarise(timed[1:], 5.0)["median_seconds_to_threshold"] is None


def test_runs_record_their_code(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Each run names the commit it ran from; a table mixing runs of several commits says which rows come from which."""
    monkeypatch.setattr(bench_learning, "code_version", lambda: "abc123")
    earlier = results_file(tmp_path / "earlier.json", [1.0, 2.0])  # a run of an older file, without a commit
    results = run_benchmark(monkeypatch, tmp_path, "--reuse", earlier, "--algos", "softq", "softq:learning_rate=0.01")
    assert [run.get("code") for run in results["runs"]] == [None, "abc123"]
    assert results["runs"][1]["cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "NO AVX", "VSX", "Z VECTOR", "SVE256")
    table = (tmp_path / "out.md").read_text()
    assert (
        "several versions of the code (commit of each run in the JSON file, `code`): abc123: softq:learning_rate=0.01; "
        "not recorded: softq." in table
    )


def test_code_version_names_a_commit() -> None:
    code = bench_learning.code_version()
    commit, *rest = code.split("+")
    assert code == "unknown" or (commit.isalnum() and rest in ([], ["changes"]))


def test_old_results_files_show_no_seconds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    earlier = results_file(tmp_path / "earlier.json", [1.0, 2.0])  # without train_seconds
    run_benchmark(monkeypatch, tmp_path, "--reuse", earlier)
    table = (tmp_path / "out.md").read_text()
    assert "| seconds to threshold (median) |" in table
    assert "| softq | 2.0 ± 0.0 | 1.5 ± 0.0 | — | n/a | 0/1 |" in table


def test_minatar_columns(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """MinAtar: DQN and QR-DQN from the benchmark's files, one network for all; the threshold is DQN's final return."""
    pytest.importorskip("minatar")
    from sb3_softq.common.torch_layers import MinAtarCNN

    assert set(bench_learning.MINATAR_ENVS) == {"MinAtar/Asterix-v1", "MinAtar/Breakout-v1", "MinAtar/Freeway-v1"}
    for env_id in bench_learning.MINATAR_ENVS:
        for algo in ("dqn", "dqn:n_steps=3", "qrdqn", "softq", "softq_lambda", "softq_lambda:munchausen"):
            _policy, kwargs, n_timesteps = bench_learning.zoo_hyperparams(algo, env_id)
            assert kwargs["policy_kwargs"]["features_extractor_class"] is MinAtarCNN
            assert kwargs["policy_kwargs"]["net_arch"] == [] and n_timesteps == 500_000
    assert bench_learning.hyperparams_file("qrdqn", "MinAtar/Breakout-v1").startswith(bench_learning.BENCHMARK_HYPERPARAMS)
    # A tiny table: the runs take their network from the entries, the threshold comes from DQN
    out = tmp_path / "minatar"
    settings = ["--env", "MinAtar/Breakout-v1", "--algos", "dqn", "softq", "--seeds", "1", "--workers", "1"]
    settings += ["--n-timesteps", "400", "--eval-freq", "200", "--eval-episodes", "1", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", ["bench_learning.py", *settings])
    bench_learning.main()
    results = json.loads((tmp_path / "minatar.json").read_text())
    dqn_final = next(run["returns"][-1] for run in results["runs"] if run["algo"] == "dqn")
    assert results["meta"]["threshold"] == dqn_final and "DQN's final return" in results["meta"]["threshold_rule"]
    assert results["meta"]["versions"]["minatar"]
    assert results["meta"]["eval_max_episode_steps"] == bench_learning.MINATAR_EVAL_MAX_EPISODE_STEPS
    assert results["summary"]["dqn"]["seeds_reaching_threshold"] == 1
    assert "DQN's final return" in (tmp_path / "minatar.md").read_text()
    # Without DQN there is no threshold
    with pytest.raises(ValueError, match="add `dqn` to --algos"):
        bench_learning.env_threshold("MinAtar/Breakout-v1", results["runs"][1:])
