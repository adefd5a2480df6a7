"""MLflow: ``MLflowLoggerCallback`` and ``setup_mlflow`` against a local file store,
read back through MLflow's own client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import atune as tune
from _checkpointing import report_with_checkpoint
from atune.errors import ConfigError, TuneError

pytest.importorskip("mlflow", reason='the mlflow extra is absent: pip install "atune[mlflow]"')

from mlflow.tracking import MlflowClient

from atune.integrations.mlflow import MLflowLoggerCallback, setup_mlflow


@pytest.fixture
def tracking_uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    # MLflow 3.7+ refuses the file store unless told; older versions ignore the variable.
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_ID", raising=False)
    return (tmp_path / "mlruns").as_uri()


def _train(config: dict[str, Any]) -> None:
    for i in range(3):
        metrics = {"loss": config["lr"] * (3 - i), "nested": {"acc": i / 10}, "tag": "x"}
        if i == 0:
            report_with_checkpoint(i, metrics)
        else:
            tune.report(metrics)
    if config.get("fail"):
        raise RuntimeError("boom")


def _runs(uri: str, experiment: str) -> dict[str, Any]:
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None
    return {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}


def test_callback_logs_a_run_per_trial_with_params_and_metrics(
    storage: str, tracking_uri: str
) -> None:
    callback = MLflowLoggerCallback(
        tracking_uri=tracking_uri, experiment_name="mlf", tags={"team": "a"}, save_artifact=True
    )
    results = tune.Tuner(
        _train,
        param_space={"lr": tune.grid_search([0.1, 0.2]), "opt": {"momentum": 0.9}},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage, name="exp", verbose=0, callbacks=[callback]
        ),
    ).fit()
    assert not results.errors

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = _runs(tracking_uri, "mlf")
    trial_names = {Path(r.path).name.split("_", 1)[0] for r in results}
    assert len(runs) == 2 and trial_names
    for result in results:
        name = str(result.metrics["trial_id"])
        run = next(r for n, r in runs.items() if name in n)
        assert run.info.status == "FINISHED"
        assert run.data.tags["team"] == "a"
        assert run.data.tags["trial_name"] == run.info.run_name
        assert run.data.params["lr"] == str(result.config["lr"])
        assert run.data.params["opt/momentum"] == "0.9"
        history = client.get_metric_history(run.info.run_id, "loss")
        lr = result.config["lr"]
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (1, pytest.approx(lr * 3)),
            (2, pytest.approx(lr * 2)),
            (3, pytest.approx(lr)),
        ]
        assert "nested/acc" in run.data.metrics and "tag" not in run.data.metrics
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        # The trial directory as it is when the trial ends: its committed checkpoint
        # (result files atune has not flushed yet may be missing, see docs/integrations.md).
        assert "checkpoint_000000" in artifacts
        checkpoint = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoint_000000")}
        assert "checkpoint_000000/state.json" in checkpoint


def test_a_failed_trial_ends_its_run_failed(storage: str, tracking_uri: str) -> None:
    callback = MLflowLoggerCallback(tracking_uri=tracking_uri, log_params_on_trial_end=True)
    results = tune.Tuner(
        _train,
        param_space={"lr": 0.5, "fail": True},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage, name="failing", verbose=0, callbacks=[callback]
        ),
    ).fit()
    assert results.errors
    # Without experiment_name, the atune experiment's name is the MLflow experiment.
    (run,) = _runs(tracking_uri, "failing").values()
    assert run.info.status == "FAILED"
    assert run.data.params["lr"] == "0.5"
    assert run.data.metrics["loss"] == pytest.approx(0.5)


def test_setup_mlflow_starts_a_run_for_the_trial(storage: str, tracking_uri: str) -> None:
    def train(config: dict[str, Any]) -> None:
        mlflow = setup_mlflow(
            config,
            tracking_uri=tracking_uri,
            experiment_name="inside",
            create_experiment_if_not_exists=True,
        )
        for i in range(2):
            mlflow.log_metric("score", config["lr"] * i, step=i)
            tune.report({"score": config["lr"] * i})
        mlflow.end_run()

    results = tune.Tuner(
        train,
        param_space={"lr": tune.grid_search([1.0, 2.0]), "mlflow": {"ignored": 1}},
        tune_config=tune.TuneConfig(backend="local", max_concurrent_trials=2),
        run_config=tune.RunConfig(storage_path=storage, name="exp", verbose=0),
    ).fit()
    assert not results.errors

    client = MlflowClient(tracking_uri=tracking_uri)
    runs = _runs(tracking_uri, "inside")
    assert len(runs) == 2
    for result in results:
        trial_id = str(result.metrics["trial_id"])
        (run,) = [r for r in runs.values() if r.data.tags.get("trial_id") == trial_id]
        assert run.info.run_name.endswith(trial_id)  # the trial's name
        assert run.info.status == "FINISHED"
        assert run.data.params == {"lr": str(result.config["lr"])}
        history = client.get_metric_history(run.info.run_id, "score")
        assert sorted((m.step, m.value) for m in history) == [(0, 0.0), (1, result.config["lr"])]


def test_setup_mlflow_refuses_a_missing_experiment_unless_asked(
    storage: str, tracking_uri: str
) -> None:
    def train(config: dict[str, Any]) -> None:
        setup_mlflow(config, tracking_uri=tracking_uri, experiment_name="nope")

    results = tune.Tuner(
        train,
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(storage_path=storage, verbose=0),
    ).fit()
    error = results[0].error
    assert error is not None and "'nope' does not exist" in str(error)
    assert isinstance(error, (ConfigError, TuneError))


async def test_logging_never_blocks_the_event_loop(storage: str, tracking_uri: str) -> None:
    from blockbuster import blockbuster_ctx

    tuner = tune.Tuner(
        _train,
        param_space={"lr": tune.grid_search([0.1, 0.2])},
        tune_config=tune.TuneConfig(backend="local"),
        run_config=tune.RunConfig(
            storage_path=storage,
            name="nb",
            verbose=0,
            callbacks=[MLflowLoggerCallback(tracking_uri=tracking_uri)],
        ),
    )
    with blockbuster_ctx():  # raises on blocking calls made from the loop's thread
        results = await tuner.fit()
    assert not results.errors
    assert len(_runs(tracking_uri, "nb")) == 2
