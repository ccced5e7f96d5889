"""
The study that chooses the constructor defaults of :class:`~sb3_softq.SoftQLambda`: one set of values, scored on
several tasks at once.

Each trial builds ``SoftQLambda(policy, env_id, seed=STUDY_SEED, **candidate)`` on every task of :data:`TASKS`
(in that order, cheapest first), trains it for the task's modest budget, evaluates the greedy policy
(``evaluate_policy``, :data:`EVAL_EPISODES` episodes) and scores the return normalised between a random policy's and
the task's goal, capped at 1 (passing a goal on one task does not make up for failing another):

.. math::

    s_k = \\min\\Big(1, \\max\\Big(0, \\frac{R_k - R^{\\text{rand}}_k}{R^{\\text{goal}}_k - R^{\\text{rand}}_k}\\Big)\\Big),
    \\qquad \\text{objective} = \\frac{1}{K} \\sum_k s_k

The running mean is reported after every task, so Optuna's median pruner stops a weak candidate after the cheap
tasks. A candidate is what a user who passes nothing gets: the policy is the default ``MlpPolicy`` (on MinAtar the
paper's network, :class:`~sb3_softq.common.torch_layers.MinAtarCNN`, the only argument given), and
``target_entropy`` is a fraction of the maximum entropy :math:`\\log|A|` (what ``target_entropy="auto"`` sets).
The budgets are those of the defaults' check (CartPole-v1: 50,000 steps) or below them (Acrobot-v1 and
LunarLander-v3: half, with the check's return as the goal): the chosen values are then checked on five other seeds
and the full budgets, beside DQN's defaults, by ``benchmarks/bench_learning.py`` with the ``defaults`` variant
(``--algos dqn:defaults softq_lambda:defaults``).

The study lives in an Optuna journal file, so that two workers share it (one process each, one PyTorch thread) and
an interrupted study resumes::

    python -m benchmarks.defaults_study --journal defaults_study.journal --trials 15 --timeout 3300 &
    python -m benchmarks.defaults_study --journal defaults_study.journal --trials 15 --timeout 3300
    python -m benchmarks.defaults_study --journal defaults_study.journal --report defaults_study.md
"""

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna

#: The seed of every training run of the study (the defaults' check uses others)
STUDY_SEED = 100
#: Greedy evaluation episodes per task
EVAL_EPISODES = 10
#: The study's greedy evaluation episodes on MinAtar are cut after this many steps (a greedy policy may never lose)
STUDY_MINATAR_EVAL_STEP_LIMIT = 5_000


@dataclass(frozen=True)
class Task:
    """One task of the objective: an environment, a training budget and the returns that normalise its score."""

    env_id: str
    timesteps: int
    random_return: float
    goal_return: float

    def score(self, mean_return: float) -> float:
        """:return: the normalised return, in [0, 1]"""
        fraction = (mean_return - self.random_return) / (self.goal_return - self.random_return)
        return float(min(1.0, max(0.0, fraction)))


#: The tasks, cheapest first. Random returns: a uniform policy's mean; goals: the defaults' acceptance
#: (CartPole-v1 475, Acrobot-v1 -100, LunarLander-v3 100) and, on Breakout, a return that no trial reaches at this
#: budget (so the score ranks the candidates rather than saturating)
TASKS = (
    Task("CartPole-v1", 50_000, 22.0, 475.0),
    Task("Acrobot-v1", 50_000, -500.0, -100.0),
    Task("LunarLander-v3", 100_000, -180.0, 100.0),
    Task("MinAtar/Breakout-v1", 50_000, 0.5, 10.0),
)

#: The candidates' values (categorical: each is a round value that a user can read as a default)
SEARCH_SPACE: dict[str, list[Any]] = {
    "learning_rate": [2.5e-4, 5e-4, 1e-3, 2e-3],
    # TD targets per gradient step, batch_size * sequence_length (the computation is chosen, not left to chance: it
    # bounds the cost of a run, which on MinAtar grows with it)
    "td_targets": [128, 256, 512],
    "sequence_length": [8, 16],
    "trace_lambda": [0.7, 0.8, 0.9, 0.95],
    "trace": ["tree_backup", "retrace"],
    "target_update_interval": [100, 250, 500, 1000],
    "gradient_steps": [1, 2],
    "learning_starts": [100, 1000],
    "buffer_size": [50_000, 100_000, 1_000_000],
    "target_entropy_fraction": [0.1, 0.2, 0.3, 0.5],
    "n_critics": [1, 2],
}

#: The study's best trial (14, objective 0.911), in the search space's terms: the constructors' defaults
CHOSEN: dict[str, Any] = dict(
    learning_rate=5e-4,
    td_targets=512,
    sequence_length=16,
    trace_lambda=0.7,
    trace="tree_backup",
    target_update_interval=250,
    gradient_steps=1,
    learning_starts=1000,
    buffer_size=50_000,
    target_entropy_fraction=0.3,
    n_critics=1,
)

#: Trials run first: the previous defaults and the tuned entries (hyperparams/softq_lambda.yml), cut to fit the
#: search space
ENQUEUED: list[dict[str, Any]] = [
    # The defaults of the release before the study (windows of 8 steps, lambda 0.9, tree backup, 256 TD targets),
    # but for DQN's Atari-scale learning rate, target period, buffer and 100 random steps
    dict(
        learning_rate=5e-4,
        td_targets=256,
        sequence_length=8,
        trace_lambda=0.9,
        trace="tree_backup",
        target_update_interval=250,
        gradient_steps=1,
        learning_starts=1000,
        buffer_size=100_000,
        target_entropy_fraction=0.2,
        n_critics=1,
    ),
    # LunarLander-v3's entry, with half its windows
    dict(
        learning_rate=5e-4,
        td_targets=512,
        sequence_length=16,
        trace_lambda=0.7,
        trace="tree_backup",
        target_update_interval=250,
        gradient_steps=2,
        learning_starts=100,
        buffer_size=50_000,
        target_entropy_fraction=0.3,
        n_critics=1,
    ),
    # CartPole-v1's entry, with a quarter of its TD targets per gradient step and one gradient step instead of two
    dict(
        learning_rate=5e-4,
        td_targets=512,
        sequence_length=16,
        trace_lambda=0.7,
        trace="retrace",
        target_update_interval=100,
        gradient_steps=1,
        learning_starts=1000,
        buffer_size=100_000,
        target_entropy_fraction=0.5,
        n_critics=2,
    ),
]


def sample_candidate(trial: optuna.Trial) -> dict[str, Any]:
    """:return: SoftQLambda's arguments (``batch_size`` from ``td_targets``) and ``target_entropy_fraction``"""
    candidate = {name: trial.suggest_categorical(name, choices) for name, choices in SEARCH_SPACE.items()}
    candidate["batch_size"] = candidate.pop("td_targets") // candidate["sequence_length"]
    return candidate


def train_and_evaluate(task: Task, candidate: dict[str, Any], seed: int) -> tuple[float, float]:
    """
    Train ``SoftQLambda`` with ``candidate`` on ``task`` and evaluate its greedy policy.

    :return: the mean evaluation return and the seconds of training
    """
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy

    from sb3_softq import SoftQLambda
    from sb3_softq.common.torch_layers import MinAtarCNN
    from sb3_softq.zoo.minatar import register_minatar_envs

    kwargs = dict(candidate)
    fraction = kwargs.pop("target_entropy_fraction")
    policy, policy_kwargs = "MlpPolicy", None
    if task.env_id.startswith("MinAtar/"):
        if not register_minatar_envs():
            raise RuntimeError("The study's MinAtar task needs MinAtar: pip install sb3_softq[minatar]")
        policy, policy_kwargs = "CnnPolicy", dict(features_extractor_class=MinAtarCNN, net_arch=[])
    with gym.make(task.env_id) as env:
        n_actions = int(env.action_space.n)
    kwargs["target_entropy"] = fraction * math.log(n_actions)
    model = SoftQLambda(policy, task.env_id, seed=seed, policy_kwargs=policy_kwargs, **kwargs)
    start = time.perf_counter()
    model.learn(task.timesteps)
    seconds = time.perf_counter() - start
    model.get_env().close()
    limit = dict(max_episode_steps=STUDY_MINATAR_EVAL_STEP_LIMIT) if task.env_id.startswith("MinAtar/") else {}
    with gym.make(task.env_id, **limit) as eval_env:
        eval_env.reset(seed=seed + 1)
        mean_return, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
    return float(mean_return), seconds


def objective(trial: optuna.Trial) -> float:
    """:return: the mean normalised return over :data:`TASKS` (pruned after any task by the median rule)"""
    candidate = sample_candidate(trial)
    scores = []
    for step, task in enumerate(TASKS):
        mean_return, seconds = train_and_evaluate(task, candidate, STUDY_SEED)
        scores.append(task.score(mean_return))
        trial.set_user_attr(f"return/{task.env_id}", mean_return)
        trial.set_user_attr(f"seconds/{task.env_id}", seconds)
        # The running mean of the tasks so far, on the scale of the final objective
        partial = float(np.sum(scores) / len(TASKS))
        trial.report(partial, step)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return float(np.mean(scores))


def report(study: optuna.Study, path: str) -> None:
    """Write the study's trials as a Markdown table, best first."""
    trials = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    trials.sort(key=lambda t: (t.state != optuna.trial.TrialState.COMPLETE, -(t.value or 0.0)))
    names = list(SEARCH_SPACE)
    header = ["trial", "objective", *(f"{task.env_id} (return, s)" for task in TASKS), *names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trial in trials:
        value = f"{trial.value:.3f}" if trial.value is not None else "pruned"
        cells = [str(trial.number), value]
        for task in TASKS:
            ret = trial.user_attrs.get(f"return/{task.env_id}")
            sec = trial.user_attrs.get(f"seconds/{task.env_id}")
            cells.append("—" if ret is None else f"{ret:.1f}, {sec:.0f}")
        cells += [str(trial.params.get(name, "")) for name in names]
        lines.append("| " + " | ".join(cells) + " |")
    with open(path, "w") as handle:
        handle.write(
            f"# Defaults study: {len(trials)} trials (seed {STUDY_SEED}, greedy evaluation on {EVAL_EPISODES} "
            f"episodes; budgets: {', '.join(f'{t.env_id} {t.timesteps:,}' for t in TASKS)})\n\n"
        )
        handle.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", required=True, help="Optuna journal file (shared by the workers, resumable)")
    parser.add_argument("--study-name", default="softq_lambda_defaults")
    parser.add_argument("--trials", type=int, default=10, help="trials this worker runs")
    parser.add_argument("--timeout", type=float, default=None, help="seconds after which this worker starts no trial")
    parser.add_argument("--report", default=None, help="write the trials table (Markdown) to this path and stop")
    args = parser.parse_args()

    import torch as th

    th.set_num_threads(1)
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(args.journal))
    study = optuna.create_study(
        study_name=args.study_name,
        storage=storage,
        direction="maximize",
        load_if_exists=True,
        # Not seeded: workers that share the journal would otherwise propose the same candidates
        sampler=optuna.samplers.TPESampler(seed=None, n_startup_trials=len(ENQUEUED) + 3),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=len(ENQUEUED), n_warmup_steps=0),
    )
    if args.report is not None:
        report(study, args.report)
        return
    if not study.trials:
        for params in ENQUEUED:
            # Workers started together may both find the study empty: each enqueued trial runs once all the same
            study.enqueue_trial(params, skip_if_exists=True)
    study.optimize(objective, n_trials=args.trials, timeout=args.timeout)


if __name__ == "__main__":
    main()
