"""
rl-zoo3's ``ExperimentManager``, adapted where rl-zoo3 2.9 offers no seam of its own.

``python -m sb3_softq.zoo train`` runs rl-zoo3's ``train()`` with this class as its experiment manager (see
:func:`sb3_softq.zoo.cli.train`). Each override says which upstream behaviour it adapts; every other behaviour,
and every other algorithm, is rl-zoo3's.
"""

import contextlib
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import optuna
import yaml
from rl_zoo3.exp_manager import ExperimentManager as RLZooExperimentManager
from sb3_contrib.common.vec_env import AsyncEval
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import CheckpointCallback
from stable_baselines3.common.vec_env import VecEnv

from sb3_softq.zoo.registration import ZOO_ALGOS, hyperparams_path

#: SB3's ``CheckpointCallback`` file names: ``<prefix>_<steps>_steps.zip`` and ``<prefix>_replay_buffer_<steps>_steps.pkl``
_CHECKPOINT_NAME = re.compile(r"^(?P<prefix>.+)_(?P<steps>\d+)_steps\.zip$")


class ConfigurationError(ValueError):
    """A command line argument or a hyperparameter file that the experiment cannot use (the message says which)."""


class ExperimentManager(RLZooExperimentManager):
    """
    rl-zoo3's experiment manager with the package's hyperparameter files, resumable checkpoints and Optuna heartbeats.

    Takes rl-zoo3's arguments, plus:

    :param heartbeat_interval: with a relational database ``storage`` (``postgresql://``, ``mysql://``,
        ``sqlite://``), each trial records a heartbeat in the database every ``heartbeat_interval`` seconds, and
        before each trial the worker marks as failed the running trials whose heartbeat is older than
        ``grace_period`` (trials of workers that died): Optuna's ``RDBStorage(heartbeat_interval, grace_period)``.
        ``None``: no heartbeat (rl-zoo3's behaviour: the trial of a dead worker stays ``RUNNING``).
    :param grace_period: seconds without a heartbeat after which a running trial is failed; Optuna's default
        (``2 * heartbeat_interval``) when ``None``
    """

    def __init__(
        self,
        *args: Any,
        config: str | None = None,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, config=config, **kwargs)  # type: ignore[misc]
        if config is None and self.algo in ZOO_ALGOS:
            # rl-zoo3 falls back to its own ``hyperparams/<algo>.yml``, which does not exist for our algorithms
            self.config = hyperparams_path(self.algo)
        if self.optimize_hyperparameters and self.max_total_trials is None and self.n_trials < 1:
            raise ConfigurationError(f"--n-trials must be at least 1 with -optimize, got {self.n_trials}")
        if self.optimize_hyperparameters and self.max_total_trials is not None and self.max_total_trials < 1:
            raise ConfigurationError(f"--max-total-trials must be at least 1, got {self.max_total_trials}")
        if self.trial_id is not None and not (self.storage and self.study_name):
            # rl-zoo3 would train with the file's hyperparameters, silently
            raise ConfigurationError("--trial-id needs the --storage and --study-name of the study to load the trial from")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ConfigurationError(f"--heartbeat-interval must be a positive number of seconds, got {heartbeat_interval}")
        if grace_period is not None and (heartbeat_interval is None or grace_period <= 0):
            raise ConfigurationError("--grace-period needs --heartbeat-interval and must be a positive number of seconds")
        if heartbeat_interval is not None and (self.storage is None or self.storage.endswith(".log")):
            raise ConfigurationError(
                f"--heartbeat-interval needs a relational database --storage (postgresql://, mysql://, sqlite://), "
                f"got {self.storage!r}"
            )
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self._heartbeat_storage: optuna.storages.RDBStorage | None = None

    def read_hyperparameters(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """
        rl-zoo3's, with a clear error for a hyperparameter file that is not a mapping of entries, and with
        ``--trial-id 0`` honoured: rl-zoo3 2.9 loads a trial only ``if self.storage and self.study_name and
        self.trial_id``, which silently skips trial number 0.
        """
        self._check_config_file()
        hyperparams, saved_hyperparams = super().read_hyperparameters()
        if self.storage and self.study_name and self.trial_id == 0:
            print("Loading from Optuna study...")
            hyperparams.update(self.load_trial(self.storage, self.study_name, self.trial_id))
            # As in rl-zoo3: the command line's -params override the trial's values
            hyperparams.update(self.custom_hyperparams or {})
            saved_hyperparams = OrderedDict([(key, hyperparams[key]) for key in sorted(hyperparams)])
        return hyperparams, saved_hyperparams

    def _check_config_file(self) -> None:
        """
        :raises ConfigurationError: a yml file that cannot be read, or whose top level or environment entry is not
            a mapping (rl-zoo3 fails later with an ``AttributeError`` or ``TypeError`` from deep inside)
        """
        if not self.config.endswith((".yml", ".yaml")):
            return
        try:
            with open(self.config) as file:
                entries = yaml.safe_load(file)
        except OSError as error:
            raise ConfigurationError(f"Cannot read the hyperparameter file {self.config}: {error.strerror}") from error
        except yaml.YAMLError as error:
            raise ConfigurationError(f"The hyperparameter file {self.config} is not valid YAML: {error}") from error
        if not isinstance(entries, dict):
            raise ConfigurationError(
                f"The hyperparameter file {self.config} must map environment ids (or `default`, `atari`) to their "
                f"hyperparameters; its top level is a {type(entries).__name__}"
            )
        for name, entry in entries.items():
            if not isinstance(entry, dict):
                raise ConfigurationError(
                    f"The entry {name!r} of the hyperparameter file {self.config} must map hyperparameter names to "
                    f"values; it is a {type(entry).__name__}"
                )

    def create_callbacks(self) -> None:
        """
        rl-zoo3's callbacks, with ``--save-freq`` checkpoints that can be resumed: rl-zoo3 2.9 builds its
        ``CheckpointCallback`` without ``save_replay_buffer`` and ``save_vecnormalize``, so ``--save-replay-buffer``
        saves the replay buffer only at the end of a run that was not interrupted.
        """
        super().create_callbacks()
        self.callbacks = [
            (
                CheckpointCallback(
                    save_freq=callback.save_freq,
                    save_path=callback.save_path,
                    name_prefix=callback.name_prefix,
                    save_replay_buffer=self.save_replay_buffer,
                    save_vecnormalize=bool(self.normalize),
                    verbose=callback.verbose,
                )
                if type(callback) is CheckpointCallback
                else callback
            )
            for callback in self.callbacks
        ]

    def _load_pretrained_agent(self, hyperparams: dict[str, Any], env: VecEnv) -> BaseAlgorithm:
        """
        rl-zoo3's, which loads ``replay_buffer.pkl`` from the folder of ``-i <model>.zip``, and also the replay
        buffer that SB3's ``CheckpointCallback`` saved beside a checkpoint (``<prefix>_replay_buffer_<steps>_steps.pkl``
        beside ``<prefix>_<steps>_steps.zip``).
        """
        model = super()._load_pretrained_agent(hyperparams, env)
        match = _CHECKPOINT_NAME.match(os.path.basename(self.trained_agent))
        if match is not None:
            replay_buffer_path = os.path.join(
                os.path.dirname(self.trained_agent), f"{match['prefix']}_replay_buffer_{match['steps']}_steps.pkl"
            )
            if os.path.exists(replay_buffer_path) and hasattr(model, "load_replay_buffer"):
                print(f"Loading the checkpoint's replay buffer {replay_buffer_path}")
                model.load_replay_buffer(replay_buffer_path, truncate_last_traj=self.truncate_last_trajectory)
        return model

    def learn(self, model: BaseAlgorithm) -> None:
        """
        rl-zoo3's, except that a model loaded with ``-i`` keeps counting its time steps: rl-zoo3 2.9 calls
        ``model.learn(n_timesteps)`` with SB3's default ``reset_num_timesteps=True``, which restarts the count at 0
        (checkpoint names, logs, and ``learning_starts``, which a full replay buffer would then wait for again).
        The run still trains ``n_timesteps`` more steps, as rl-zoo3 documents for ``-i``.
        """
        if not self.continue_training:
            super().learn(model)
            return
        # From here on, rl-zoo3's learn() with reset_num_timesteps=False (SB3 then trains `n_timesteps` more steps)
        kwargs: dict[str, Any] = {}
        if self.log_interval > -1:
            kwargs = {"log_interval": self.log_interval}
        elif self.log_interval < -1:
            kwargs = {"log_interval": None}
        if len(self.callbacks) > 0:
            kwargs["callback"] = self.callbacks
        if self.algo == "ars" and self.n_envs > 1:
            kwargs["async_eval"] = AsyncEval(
                [lambda: self.create_envs(n_envs=1, no_log=True) for _ in range(self.n_envs)], model.policy
            )
        try:
            model.learn(self.n_timesteps, reset_num_timesteps=False, **kwargs)
        except KeyboardInterrupt:
            pass  # as in rl-zoo3: the model is saved when training is interrupted
        finally:
            if len(self.callbacks) > 0:
                self.callbacks[0].on_training_end()
            try:
                assert model.env is not None
                model.env.close()
            except EOFError:
                pass

    def objective(self, trial: optuna.Trial) -> float:
        """
        rl-zoo3's, with Optuna's heartbeat when ``heartbeat_interval`` is set: rl-zoo3 2.9 passes ``--storage`` to
        ``optuna.create_study`` as a URL, which builds an ``RDBStorage`` without heartbeat, and offers no way to give
        it one. Each trial therefore records its heartbeat through a second ``RDBStorage`` of the same database,
        built with ``heartbeat_interval`` and ``grace_period``, and first fails the stale trials of the study (what
        Optuna's ``study.optimize`` does before each trial when its storage has a heartbeat).
        """
        if self.heartbeat_interval is None:
            return super().objective(trial)
        assert self.storage is not None
        if self._heartbeat_storage is None:
            self._heartbeat_storage = optuna.storages.RDBStorage(
                self.storage, heartbeat_interval=self.heartbeat_interval, grace_period=self.grace_period
            )
        storage = self._heartbeat_storage
        study = optuna.load_study(study_name=trial.study.study_name, storage=storage)
        failed = optuna.storages.fail_stale_trials(study)
        if failed and self.verbose > 0:
            print(f"Trials marked as failed (no heartbeat for {storage.get_heartbeat_interval()} s and more): {failed}")
        # The trial's id in the storage (Optuna's own heartbeat reads the same attribute)
        with _heartbeat(storage, trial._trial_id, self.heartbeat_interval):
            return super().objective(trial)


@contextlib.contextmanager
def _heartbeat(storage: optuna.storages.RDBStorage, trial_id: int, interval: int) -> Iterator[None]:
    """Record the heartbeat of ``trial_id`` every ``interval`` seconds while the block runs."""
    stop = threading.Event()

    def beat() -> None:
        while True:
            storage.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-trial-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
