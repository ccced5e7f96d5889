"""The study that chose SoftQLambda's defaults: its score, its candidates, its report, and the defaults it chose."""

import inspect
import math
from pathlib import Path

import optuna
import pytest

from benchmarks import defaults_study
from sb3_softq import SoftQ, SoftQLambda
from sb3_softq.softq.softq import DEFAULT_TARGET_ENTROPY_FRACTION

CARTPOLE = defaults_study.TASKS[0]


@pytest.mark.parametrize(
    "mean_return, expected",
    [(CARTPOLE.random_return, 0.0), (CARTPOLE.goal_return, 1.0), (500.0, 1.0), (0.0, 0.0)],
)
def test_score_is_the_return_normalised_and_capped(mean_return: float, expected: float) -> None:
    assert CARTPOLE.score(mean_return) == expected


def test_score_is_linear_between_random_and_goal() -> None:
    halfway = (CARTPOLE.random_return + CARTPOLE.goal_return) / 2
    assert CARTPOLE.score(halfway) == pytest.approx(0.5)


def test_candidates_are_constructor_arguments_with_the_chosen_computation() -> None:
    """Every sampled candidate is valid for SoftQLambda and spends the sampled number of TD targets per step."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    parameters = inspect.signature(SoftQLambda.__init__).parameters
    for _ in range(20):
        trial = study.ask()
        candidate = defaults_study.sample_candidate(trial)
        assert candidate["batch_size"] * candidate["sequence_length"] == trial.params["td_targets"]
        assert set(candidate) - {"target_entropy_fraction"} <= set(parameters)
        study.tell(trial, 0.0)


def test_enqueued_trials_lie_in_the_search_space() -> None:
    for params in defaults_study.ENQUEUED:
        assert set(params) == set(defaults_study.SEARCH_SPACE)
        for name, value in params.items():
            assert value in defaults_study.SEARCH_SPACE[name], name


def test_report_lists_finished_trials_best_first(tmp_path: Path) -> None:
    study = optuna.create_study(direction="maximize")
    for value, returns in [(0.5, [200.0, -300.0]), (0.9, [500.0, -90.0])]:
        trial = study.ask(
            {name: optuna.distributions.CategoricalDistribution(c) for name, c in defaults_study.SEARCH_SPACE.items()}
        )
        for task, mean_return in zip(defaults_study.TASKS, returns, strict=False):  # the first tasks only
            trial.set_user_attr(f"return/{task.env_id}", mean_return)
            trial.set_user_attr(f"seconds/{task.env_id}", 10.0)
        study.tell(trial, value)
    pruned = study.ask()
    study.tell(pruned, state=optuna.trial.TrialState.PRUNED)
    study.ask()  # still running: not reported

    path = tmp_path / "report.md"
    defaults_study.report(study, str(path))
    rows = [line for line in path.read_text().splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [row.split(" | ")[0:2] for row in rows] == [["| 1", "0.900"], ["| 0", "0.500"], ["| 2", "pruned"]]
    assert "500.0, 10" in rows[0] and "—" in rows[0]  # the tasks it did not reach


def test_the_defaults_are_the_best_trial_of_the_study() -> None:
    """The constructors' defaults are the study's best trial (documentation, "Tuning studies", "The defaults")."""
    chosen = dict(defaults_study.CHOSEN)
    assert DEFAULT_TARGET_ENTROPY_FRACTION == chosen.pop("target_entropy_fraction")
    chosen["batch_size"] = chosen.pop("td_targets") // chosen["sequence_length"]
    for algorithm in (SoftQLambda, SoftQ):
        parameters = inspect.signature(algorithm.__init__).parameters
        shared = {name: value for name, value in chosen.items() if name in parameters}
        assert {name: parameters[name].default for name in shared} == shared, algorithm.__name__
    assert set(chosen) <= set(inspect.signature(SoftQLambda.__init__).parameters)


def test_auto_target_entropy_is_the_default_fraction_of_the_maximum() -> None:
    model = SoftQLambda("MlpPolicy", "CartPole-v1")
    assert model.target_entropy == pytest.approx(DEFAULT_TARGET_ENTROPY_FRACTION * math.log(2))
