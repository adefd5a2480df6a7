"""MLflow: ``MLflowLoggerCallback`` and ``setup_mlflow`` (Ray's ``ray.air.integrations.mlflow``).

Needs the ``mlflow`` extra (``pip install "atune[mlflow]"``, which installs
``mlflow-skinny``). Two ways to track trials, as in Ray:

* :class:`MLflowLoggerCallback`, given to ``RunConfig(callbacks=[...])``, logs from the
  driver: one MLflow run per trial, named after the trial (tag ``trial_name``), with the
  trial's config (flattened with ``/``) as params and every numeric value of every result
  (flattened with ``/``) as a metric at step ``timesteps_total`` when reported, else
  ``training_iteration``. The run ends FINISHED when the trial completes, FAILED when it
  fails, and KILLED when the experiment ends without the trial ending (cancelled).
* :func:`setup_mlflow`, called inside the trainable, starts an MLflow run for the trial
  and returns the ``mlflow`` module, so that the trainable logs what it likes with
  MLflow's own API (``mlflow.log_metric``...).

A local file store (``tracking_uri="file:///path/mlruns"``) works; MLflow 3.7+ refuses
it unless the environment has ``MLFLOW_ALLOW_FILE_STORE=true`` (MLflow's own switch; it
recommends ``sqlite:///mlflow.db`` instead). On a cluster use a tracking server reachable
from every node.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING, Any

from atune._extras import require
from atune._flatten import flatten_dict
from atune.errors import ConfigError
from atune.logger.logger import LoggerCallback

require("mlflow", "mlflow", "atune.integrations.mlflow")

import mlflow  # noqa: E402
from mlflow.entities import Metric, Param  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

if TYPE_CHECKING:
    from types import ModuleType

    from atune._trial import Trial

__all__ = ["MLflowLoggerCallback", "setup_mlflow"]

_log = logging.getLogger(__name__)

_BATCH = 100  # MLflow's limit of params per log_batch call


def _params(config: dict[str, Any]) -> dict[str, str]:
    """The config flattened with ``/``, each value as MLflow stores params (a string)."""
    return {str(k): str(v) for k, v in flatten_dict(config, delimiter="/").items()}


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    """Every value of the flattened result that is a number (booleans count as 0/1)."""
    metrics = {}
    for key, value in flatten_dict(result, delimiter="/").items():
        if isinstance(value, (str, bytes)):
            continue
        try:
            metrics[str(key)] = float(value)
        except (TypeError, ValueError):
            continue
    return metrics


def _experiment_id(
    client: MlflowClient,
    experiment_id: str | None,
    experiment_name: str | None,
    create: bool,
    artifact_location: str | None = None,
) -> str:
    """The id of the experiment named by id or name (the id wins), created if asked."""
    experiment_id = experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
    experiment_name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if experiment_id:
        try:
            return str(client.get_experiment(experiment_id).experiment_id)
        except mlflow.exceptions.MlflowException:
            if not experiment_name:
                raise ConfigError(
                    f"MLflow experiment_id={experiment_id!r} does not exist and no "
                    "experiment_name was given"
                ) from None
    if not experiment_name:
        raise ConfigError(
            "MLflow needs an experiment: pass experiment_name= (or experiment_id=), "
            "or set MLFLOW_EXPERIMENT_NAME"
        )
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return str(experiment.experiment_id)
    if not create:
        raise ConfigError(
            f"MLflow experiment_name={experiment_name!r} does not exist; create it, or pass "
            "create_experiment_if_not_exists=True"
        )
    return str(client.create_experiment(experiment_name, artifact_location=artifact_location))


class MLflowLoggerCallback(LoggerCallback):
    """Logs each trial as an MLflow run: config as params, results as metrics.

    Args:
        tracking_uri: Where MLflow keeps runs (a server, ``sqlite:///...`` or
            ``file:///...``); None uses MLflow's default (``MLFLOW_TRACKING_URI``).
        registry_uri: MLflow's model registry URI.
        experiment_name: The MLflow experiment for all trials; created if missing.
            None: ``MLFLOW_EXPERIMENT_NAME``, else the atune experiment's name.
        tags: Tags set on every trial's run (besides ``trial_name``).
        tracking_token: Sets ``MLFLOW_TRACKING_TOKEN`` (authentication with a server).
        save_artifact: When a trial ends, upload its whole trial directory as the run's
            artifacts.
        log_params_on_trial_end: Log the params when the trial ends instead of when it
            starts.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        registry_uri: str | None = None,
        experiment_name: str | None = None,
        tags: dict[str, Any] | None = None,
        tracking_token: str | None = None,
        save_artifact: bool = False,
        log_params_on_trial_end: bool = False,
    ) -> None:
        super().__init__()
        if tags is not None and not isinstance(tags, dict):
            raise ConfigError(f"MLflowLoggerCallback(tags=...) must be a dict, got {tags!r}")
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags = dict(tags or {})
        self.tracking_token = tracking_token
        self.should_save_artifact = save_artifact
        self.log_params_on_trial_end = log_params_on_trial_end
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None
        self._runs: dict[str, str] = {}

    @property
    def client(self) -> MlflowClient:
        """The MLflow client (available once the experiment has started)."""
        if self._client is None:
            raise RuntimeError("MLflowLoggerCallback is not set up yet")
        return self._client

    def log_setup(self, **info: Any) -> None:
        """Connects to the tracking store and finds or creates the experiment."""
        if self.tracking_token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.tracking_token
        self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)
        self._experiment_id = None

    def _experiment(self, trial: Trial) -> str:
        if self._experiment_id is None:
            name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
            name = name or os.path.basename(trial.experiment_path.rstrip("/\\"))
            self._experiment_id = _experiment_id(self.client, None, name, create=True)
        return self._experiment_id

    def log_trial_start(self, trial: Trial) -> None:
        """Creates the trial's run (once; a retry reuses it) and logs the params."""
        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            tags = {str(k): str(v) for k, v in self.tags.items()}
            tags["trial_name"] = str(trial)
            run = self.client.create_run(self._experiment(trial), run_name=str(trial), tags=tags)
            run_id = self._runs[trial.trial_id] = run.info.run_id
        if not self.log_params_on_trial_end:
            self._log_params(run_id, trial.config)

    def _log_params(self, run_id: str, config: dict[str, Any]) -> None:
        params = [Param(k, v) for k, v in _params(config).items()]
        for start in range(0, len(params), _BATCH):
            self.client.log_batch(run_id, params=params[start : start + _BATCH])

    def log_trial_result(self, iteration: int, trial: Trial, result: dict[str, Any]) -> None:
        """Logs every numeric value of the result at its step."""
        if trial.trial_id not in self._runs:
            self.log_trial_start(trial)
        step = int(result.get("timesteps_total") or result.get("training_iteration") or 0)
        now = int(time.time() * 1000)
        metrics = [Metric(k, v, now, step) for k, v in _metrics(result).items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self._runs[trial.trial_id], metrics=metrics[start : start + 1000])

    def log_trial_end(self, trial: Trial, failed: bool = False) -> None:
        """Uploads the trial directory if asked, and ends the run (FINISHED or FAILED)."""
        self._end(trial, "FAILED" if failed else "FINISHED")

    def _end(self, trial: Trial, status: str) -> None:
        run_id = self._runs.pop(trial.trial_id, None)
        if run_id is None:
            return
        if self.log_params_on_trial_end:
            self._log_params(run_id, trial.config)
        if self.should_save_artifact and os.path.isdir(trial.path):
            self.client.log_artifacts(run_id, trial.path)
        self.client.set_terminated(run_id, status=status)

    async def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:  # type: ignore[override]
        """Ends the runs of trials that never ended as KILLED."""
        left = [t for t in trials if t.trial_id in self._runs]

        def kill() -> None:
            for trial in left:
                self._end(trial, "KILLED")

        self._open_trials.clear()
        await self._run(kill)
        await self._run(self.log_experiment_end)


def setup_mlflow(
    config: dict[str, Any] | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
    experiment_id: str | None = None,
    experiment_name: str | None = None,
    tracking_token: str | None = None,
    artifact_location: str | None = None,
    run_name: str | None = None,
    create_experiment_if_not_exists: bool = False,
    tags: dict[str, Any] | None = None,
    rank_zero_only: bool = True,
) -> ModuleType:
    """Start an MLflow run for the running trial and return the ``mlflow`` module.

    Call it inside the trainable; log with the returned module (``mlflow.log_metric``)
    and end with ``mlflow.end_run()`` (the run also ends when the process exits). The run
    is the active run of the calling thread (MLflow keeps one per thread), so trials that
    run side by side in one process each get their own.

    Args:
        config: Logged as the run's params (flattened with ``/``); its ``"mlflow"`` key,
            if any, is left out.
        tracking_uri: See :class:`MLflowLoggerCallback`; None: ``MLFLOW_TRACKING_URI``.
        registry_uri: MLflow's model registry URI.
        experiment_id: An existing MLflow experiment; wins over ``experiment_name``.
        experiment_name: The MLflow experiment; None: ``MLFLOW_EXPERIMENT_NAME``, else
            (atune) the atune experiment's name. (Ray Tune defaults to the trial's name.)
        tracking_token: Sets ``MLFLOW_TRACKING_TOKEN``.
        artifact_location: Where a newly created experiment keeps its artifacts.
        run_name: The run's name; None: the trial's name.
        create_experiment_if_not_exists: Create the experiment when it does not exist
            (otherwise that is a :class:`~atune.errors.ConfigError`).
        tags: Tags for the run (besides ``trial_name`` and ``trial_id``).
        rank_zero_only: Accepted for Ray compatibility; atune runs no distributed
            workers, so every call starts a run.

    Returns:
        The ``mlflow`` module, with the trial's run active.

    Raises:
        ConfigError: No experiment is named, or the named one does not exist and
            ``create_experiment_if_not_exists`` is False.
    """
    from atune.context import get_context

    context = get_context()
    trial_name = context.get_trial_name()
    trial_id = context.get_trial_id()
    if tracking_token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = tracking_token
    if tracking_uri:
        mlflow.set_tracking_uri(tracking_uri)
    if registry_uri:
        mlflow.set_registry_uri(registry_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=registry_uri)
    name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    name = name or context.get_experiment_name()
    exp_id = _experiment_id(
        client, experiment_id, name, create_experiment_if_not_exists, artifact_location
    )
    run_tags = {str(k): str(v) for k, v in (tags or {}).items()}
    if trial_name:
        run_tags.setdefault("trial_name", trial_name)
    if trial_id:
        run_tags.setdefault("trial_id", trial_id)
    mlflow.start_run(experiment_id=exp_id, run_name=run_name or trial_name, tags=run_tags)
    params = {k: v for k, v in (config or {}).items() if k != "mlflow"}
    if params:
        mlflow.log_params(_params(params))
    return mlflow
