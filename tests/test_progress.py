"""Progress output at verbosity 0, 1 and 2."""

from __future__ import annotations

import io
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

import atune as tune
from atune._progress import ProgressReporter, _LiveDisplay, _PlainDisplay, in_notebook
from atune._trial import Trial
from atune.errors import ConfigError
from atune.events import ExperimentStarted
from atune.execution.placement_groups import PlacementGroupFactory
from atune.storage._layout import ERROR_FILE


def _fn(config: dict[str, Any]) -> None:
    if config["x"] == 3:
        raise ValueError("three")
    tune.report({"loss": config["x"] * 1.5})


def _fit(storage: str, verbose: int | None) -> None:
    tune.Tuner(
        _fn,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, verbose=verbose),
    ).fit()


def test_verbose_0_prints_nothing(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fit(storage, 0)
    assert capsys.readouterr().out == ""


def test_default_prints_a_summary_and_a_table(
    storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _fit(storage, None)
    out = capsys.readouterr().out
    assert "3 trials: 1 ERROR, 2 TERMINATED" in out
    assert "best loss=1.5" in out
    assert "Trials" in out and "TERMINATED" in out
    assert "completed" not in out  # per-trial lines only at verbose=2
    # A failed trial is visible by default: its exception and where the details are.
    (line,) = [line for line in out.splitlines() if "errored" in line]
    assert "builtins.ValueError: three" in line
    error_file = line.split("Error file: ")[1].strip()
    assert error_file.endswith(ERROR_FILE) and "ValueError: three" in Path(error_file).read_text()


def test_verbose_2_adds_a_line_per_trial(storage: str, capsys: pytest.CaptureFixture[str]) -> None:
    _fit(storage, 2)
    out = capsys.readouterr().out
    assert out.count("completed (returned)") == 2
    assert "errored: builtins.ValueError: three" in out


def _always_fails(config: dict[str, Any]) -> None:
    raise KeyError("[bracketed] message")


def test_a_trial_stopped_while_failing_is_shown_as_failed(
    storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    tune.Tuner(
        _always_fails,
        tune_config=tune.TuneConfig(backend="local", time_budget_s=1.5),
        run_config=tune.RunConfig(
            storage_path=storage, failure_config=tune.FailureConfig(max_failures=-1)
        ),
    ).fit()
    out = capsys.readouterr().out
    assert "ended (time_budget) while failing: builtins.KeyError: '[bracketed] message'" in out
    assert "Retrying" not in out  # retries only at verbose=2


# ---------------------------------------------------------------- where progress shows
def _steps(config: dict[str, Any]) -> None:
    for step in range(3):
        tune.report({"loss": config["x"] * (3 - step), "acc": step})


class _Handle:
    """What ``display(..., display_id=True)`` returns: a handle to update in place."""

    def __init__(self, log: list[tuple[str, dict[str, str]]]) -> None:
        self.log = log

    def update(self, bundle: dict[str, str], raw: bool = False) -> None:
        assert raw
        self.log.append(("update", bundle))


def _fake_notebook(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    """A minimal IPython kernel: ``get_ipython()`` has a kernel, ``display`` records."""
    log: list[tuple[str, dict[str, str]]] = []

    def display(bundle: dict[str, str], raw: bool = False, display_id: bool = False) -> _Handle:
        assert raw and display_id
        log.append(("display", bundle))
        return _Handle(log)

    shell = types.SimpleNamespace(kernel=object())
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    ipython_display = types.ModuleType("IPython.display")
    ipython_display.display = display  # type: ignore[attr-defined]
    ipython.display = ipython_display  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    monkeypatch.setitem(sys.modules, "IPython.display", ipython_display)
    return log


def _fit_steps(storage: str, **run: Any) -> tune.ResultGrid:
    return tune.Tuner(
        _steps,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage, **run),
    ).fit()


def test_a_notebook_gets_one_output_updated_in_place(
    storage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _fake_notebook(monkeypatch)
    _fit_steps(storage)
    kinds = [kind for kind, _ in log]
    assert kinds[0] == "display" and kinds.count("display") == 1
    assert kinds.count("update") >= 1
    final = log[-1][1]
    assert "3 trials: 3 TERMINATED" in final["text/plain"]
    assert "best loss=1" in final["text/plain"]
    assert "\x1b" not in "".join(bundle["text/plain"] for _, bundle in log)
    assert "<table>" in final["text/html"] and "<td>TERMINATED</td>" in final["text/html"]
    assert capsys.readouterr().out == ""  # nothing printed besides the display


def test_a_notebook_shows_failed_trials_in_the_same_output(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_notebook(monkeypatch)
    tune.Tuner(
        _fn,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(backend="local", metric="loss", mode="min"),
        run_config=tune.RunConfig(storage_path=storage),
    ).fit()
    assert [kind for kind, _ in log].count("display") == 1
    final = log[-1][1]
    assert "errored: builtins.ValueError: three" in final["text/plain"]
    assert "Failed trials" in final["text/plain"] and ERROR_FILE in final["text/html"]


def test_jupyter_reporter_overwrite_false_adds_outputs(
    storage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _fake_notebook(monkeypatch)
    reporter = tune.JupyterNotebookReporter(overwrite=False, max_report_frequency=0)
    _fit_steps(storage, progress_reporter=reporter)
    assert {kind for kind, _ in log} == {"display"} and len(log) > 1


def test_verbose_0_with_a_reporter_writes_nothing(
    storage: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = _fake_notebook(monkeypatch)
    _fit_steps(storage, verbose=0, progress_reporter=tune.JupyterNotebookReporter())
    _fit_steps(storage, verbose=0, progress_reporter=tune.CLIReporter(max_report_frequency=0))
    assert log == []
    assert capsys.readouterr().out == ""


def _trials(n: int) -> list[Trial]:
    trials = []
    for i in range(n):
        trial = Trial(
            trial_id=f"t{i}",
            trial_name=f"f_t{i}",
            dirname=f"f_t{i}",
            config={"x": i, "lr": 0.1},
            experiment_tag=str(i),
            resources=PlacementGroupFactory([{"CPU": 1}]),
            experiment_path="/tmp/experiment",
        )
        trial.status = "RUNNING" if i % 2 else "TERMINATED"
        trial.last_result = {"loss": float(10 - i), "acc": i, "training_iteration": 2}
        trials.append(trial)
    return trials


def _tick(ts: float) -> ExperimentStarted:
    """Any event, at time ``ts``."""
    return ExperimentStarted(ts=ts, name="e", path="/tmp/experiment")


def test_a_terminal_gets_one_live_display_redrawn_in_place() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    reporter = ProgressReporter(1, metric="loss", mode="min", console=console)
    assert isinstance(reporter.display, _LiveDisplay)
    trials = _trials(3)
    reporter.on_trial_start(0, trials, trials[0])
    for ts in range(1, 6):  # five events, seconds apart: five redraws
        trials[1].last_result = {**trials[1].last_result, "loss": 100.0 + ts}
        reporter.on_event(_tick(float(ts)))
    live = reporter.display.live  # type: ignore[attr-defined]
    reporter.on_experiment_end(trials)
    assert reporter.display.live is live  # one Live for the whole run
    text = out.getvalue()
    # Each redraw moves the cursor back up over the previous one (in place)...
    assert text.count("\x1b[2K") >= 4 and "\x1b[1A" in text
    # ...rather than printing a new table each time.
    assert "105" in text and text.count("Trials") >= 5


def test_events_between_refreshes_do_no_rendering() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(1, console=Console(file=out, force_terminal=True, width=100))
    trials = _trials(2)
    reporter.on_trial_start(0, trials, trials[0])
    reporter.on_event(_tick(100.0))
    drawn = out.getvalue()
    for i in range(50):  # all within one refresh interval
        reporter.on_event(_tick(100.0 + i / 100))
    assert out.getvalue() == drawn
    reporter.on_experiment_end(trials)


def test_output_that_is_not_a_terminal_is_plain_lines() -> None:
    out = io.StringIO()
    reporter = ProgressReporter(1, metric="loss", mode="min", console=Console(file=out))
    assert isinstance(reporter.display, _PlainDisplay)
    trials = _trials(2)
    reporter.on_trial_start(0, trials, trials[0])
    for ts in (10.0, 16.0, 22.0):  # the first status is skipped (it says little)
        reporter.on_event(_tick(ts))
    reporter.on_experiment_end(trials)
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("== 2 trials: 1 RUNNING, 1 TERMINATED") == 3  # 2 statuses + the end
    assert text.count("Trials") == 1  # the table once, at the end


def test_cli_reporter_options_choose_columns_rows_and_order() -> None:
    out = io.StringIO()
    reporter_options = tune.CLIReporter(
        metric_columns={"acc": "accuracy"},
        parameter_columns=["lr"],
        max_progress_rows=2,
        sort_by_metric=True,
        metric="loss",
        mode="min",
    )
    reporter = ProgressReporter(1, console=Console(file=out, width=120), reporter=reporter_options)
    trials = _trials(4)
    reporter.on_experiment_end(trials)
    text = out.getvalue()
    header = next(line for line in text.splitlines() if "accuracy" in line)
    assert "lr" in header and " x " not in header and "iter" not in header
    rows = [line for line in text.splitlines() if line.startswith("│ f_t")]
    assert [row.split()[1] for row in rows] == ["f_t3", "f_t2"]  # best loss first, 2 rows
    assert "... and 2 more" in text
    assert "best loss=7 (f_t3)" in text


def test_progress_reporter_in_run_config_is_used(
    storage: str, capsys: pytest.CaptureFixture[str]
) -> None:
    reporter = tune.CLIReporter(metric_columns=["acc"], parameter_columns={"x": "the x"})
    _fit_steps(storage, progress_reporter=reporter)
    out = capsys.readouterr().out
    assert "the x" in out and "acc" in out


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_report_frequncy": 5}, "max_report_frequncy"),
        ({"colour": True}, "colour"),
        ({"max_progress_rows": 0}, "max_progress_rows"),
        ({"mode": "best"}, "mode"),
        ({"metric_columns": 3}, "metric_columns"),
    ],
)
def test_cli_reporter_refuses_what_it_does_not_support(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        tune.CLIReporter(**options)


def test_overwrite_is_a_notebook_option_only() -> None:
    with pytest.raises(ConfigError, match="overwrite"):
        tune.CLIReporter(overwrite=True)


def test_run_config_refuses_something_that_is_not_a_reporter() -> None:
    with pytest.raises(ConfigError, match="progress_reporter"):
        tune.RunConfig(progress_reporter=object())


def test_ray_import_paths() -> None:
    from atune.progress_reporter import CLIReporter, JupyterNotebookReporter

    assert tune.CLIReporter is CLIReporter
    assert tune.JupyterNotebookReporter is JupyterNotebookReporter
    assert issubclass(CLIReporter, tune.ProgressReporter)


class _Recording(tune.ProgressReporter):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.calls.append(("setup", (total_samples, metric, mode)))

    def report(self, trials: list[Any], done: bool, *sys_info: Any) -> None:
        self.calls.append(("report", (len(trials), done, sys_info)))


def test_a_custom_reporter_is_called_as_ray_calls_it(storage: str) -> None:
    reporter = _Recording()
    _fit_steps(storage, progress_reporter=reporter)
    assert reporter.calls[0] == ("setup", (3, "loss", "min"))
    name, (n, done, sys_info) = reporter.calls[-1]
    assert (name, n, done) == ("report", 3, True)
    assert "3 trials: 3 TERMINATED" in sys_info[0]


def test_a_terminal_ipython_is_not_a_notebook(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not in_notebook()  # IPython not imported: never imported to find out
    ipython = types.ModuleType("IPython")
    ipython.get_ipython = lambda: types.SimpleNamespace()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "IPython", ipython)
    assert not in_notebook()  # a shell without a kernel (terminal IPython)
    ipython.get_ipython = lambda: types.SimpleNamespace(kernel=object())  # type: ignore[attr-defined]
    assert in_notebook()
