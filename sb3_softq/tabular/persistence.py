"""
Saving and loading :class:`~sb3_softq.tabular.TabularSoftQLambda` as a NumPy ``.npz`` file, without pickle.

The file holds two JSON strings (``options``: the constructor's options; ``state``: counters and the random
generator's state) and the arrays (the table, traces, visit counts, reference policy and the
:class:`~sb3_softq.tabular.history.LearningHistory`). Callables (a ``learning_rate`` schedule, a ``behaviour_policy``
function) are not saved: only that there was one, so that :func:`load_model` can ask for them again.
"""

import json
import os
import warnings
from typing import TYPE_CHECKING, Any, TypeVar

import gymnasium as gym
import numpy as np

from sb3_softq.tabular.history import LearningHistory
from sb3_softq.tabular.options import BehaviourPolicy, Schedule

if TYPE_CHECKING:
    from sb3_softq.tabular import learner

ModelT = TypeVar("ModelT", bound="learner.TabularSoftQLambda")

#: The options that may be callables, which are not saved.
CALLABLE_OPTIONS = ("learning_rate", "behaviour_policy")


def missing_callable_message(name: str) -> str:
    """:return: the error telling that the callable ``name`` was not saved and must be given again."""
    return (
        f"{name} was a callable when this model was saved; callables are not saved. "
        f"Pass it again: TabularSoftQLambda.load(path, env, {name}=...) or set model.{name}"
    )


def save_model(model: "learner.TabularSoftQLambda", path: str | os.PathLike[str]) -> None:
    """
    Write ``model`` to ``path`` (see :meth:`TabularSoftQLambda.save <sb3_softq.tabular.TabularSoftQLambda.save>`).

    :param model: the model
    :param path: file path (``.npz`` is appended when missing)
    """
    options: dict[str, Any] = {
        "n_states": model.n_states,
        "n_actions": model.n_actions,
        "ent_coef": model.ent_coef,
        "gamma": model.gamma,
        "learning_rate": None if callable(model.learning_rate) else model.learning_rate,
        "learning_rate_is_callable": callable(model.learning_rate) or "learning_rate" in model._missing,
        "algorithm": model.algorithm,
        "trace": model.trace,
        "n": model.n,
        "trace_lambda": None if model.algorithm == "one_step" else model.trace_lambda,
        "trace_type": model.trace_type,
        "behaviour_policy": None if callable(model.behaviour_policy) else model.behaviour_policy,
        "behaviour_policy_is_callable": callable(model.behaviour_policy) or "behaviour_policy" in model._missing,
        "online": model.online,
        "seed": model.seed,
    }
    state = {
        "num_timesteps": model.num_timesteps,
        "num_episodes": model.num_episodes,
        "total_timesteps": model._total_timesteps,
        "needs_env_seed": model._needs_env_seed,
        "rng": model._rng.bit_generator.state,
    }
    arrays = {
        "options": np.array(json.dumps(options)),
        "state": np.array(json.dumps(state)),
        "q_table": model.q_table,
        "traces": model.traces,
        "visit_counts": model.visit_counts,
        "reference_policy": np.zeros(0) if model.reference_policy is None else model.reference_policy,
        **model._history.arrays(),
    }
    np.savez(path, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like its keyword arguments


def load_model(
    cls: type[ModelT],
    path: str | os.PathLike[str],
    env: gym.Env | None = None,
    learning_rate: float | Schedule | None = None,
    behaviour_policy: BehaviourPolicy = None,
) -> ModelT:
    """
    Read a model written by :func:`save_model` (see :meth:`TabularSoftQLambda.load
    <sb3_softq.tabular.TabularSoftQLambda.load>`).

    :return: the model, an instance of ``cls``
    """
    path = os.fspath(path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path = path + ".npz"
    with np.load(path, allow_pickle=False) as data:
        options = json.loads(str(data["options"]))
        state = json.loads(str(data["state"]))
        arrays = {key: np.array(data[key]) for key in data.files if key not in ("options", "state")}
    given: dict[str, Any] = {"learning_rate": learning_rate, "behaviour_policy": behaviour_policy}
    missing = set()
    for name in CALLABLE_OPTIONS:
        if given[name] is None:
            given[name] = options[name]
            if options[f"{name}_is_callable"]:
                missing.add(name)
    for name in sorted(missing):
        warnings.warn(f"{name} was a callable and was not saved: pass {name}=... to load() (or set it) before learn()")
    model = cls.__new__(cls)
    model.env = None
    reference = arrays["reference_policy"]
    model._configure(
        options["n_states"], options["n_actions"], options["ent_coef"], reference if reference.size else None,
        options["gamma"], given["learning_rate"], options["algorithm"], options["trace"], options["n"],
        options["trace_lambda"], options["trace_type"], given["behaviour_policy"], options["online"], options["seed"],
    )  # fmt: skip
    model._missing = missing
    model.q_table[:] = arrays["q_table"]
    model.traces[:] = arrays["traces"]
    model.visit_counts[:] = arrays["visit_counts"]
    model._history = LearningHistory.from_arrays(arrays)
    model.num_timesteps = state["num_timesteps"]
    model.num_episodes = state["num_episodes"]
    model._total_timesteps = state["total_timesteps"]
    model._needs_env_seed = state["needs_env_seed"]
    model._rng.bit_generator.state = state["rng"]
    if env is not None:
        model.set_env(env)
    return model
