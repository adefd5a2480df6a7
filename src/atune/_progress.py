"""Progress output for people: a status line now and then, and a table at the end.

``RunConfig(verbose=...)``: 0 prints nothing; 1 (the default) prints a one-line status at
most every few seconds, one line per trial that ends in error (the exception's type and
message, and the path of its ``error.txt``), and a results table when the experiment ends;
2 also prints one line per finished trial and per failed attempt that is retried. Output goes through ``rich``, which renders a table in a
terminal and in Jupyter alike. Programs should subscribe to events (``Callback.on_event``)
rather than parse this output.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from rich.console import Console
from rich.table import Table

from atune._trial import ERROR, Trial
from atune.callback import Callback
from atune.events import Event, ExperimentFinished, TrialErrored
from atune.storage._layout import ERROR_FILE

__all__ = ["ProgressReporter"]

_STATUS_EVERY_S = 5.0
_MAX_ROWS = 20


class ProgressReporter(Callback):
    """Prints experiment progress (see the module docstring)."""

    def __init__(
        self,
        verbose: int,
        *,
        metric: str | None = None,
        mode: str | None = None,
        console: Console | None = None,
    ) -> None:
        self.verbose = verbose
        self.metric = metric
        self.mode = mode
        self.console = console or Console(highlight=False)
        self._last_status = 0.0
        self._trials: dict[str, Trial] = {}

    def on_event(self, event: Event) -> None:
        if self.verbose >= 2 and isinstance(event, TrialErrored) and event.will_retry:
            trial = self._trials.get(event.trial_id)
            name = trial.trial_name if trial else event.trial_id
            self._say(f"Trial {name} errored: {event.error_type}: {event.message}. Retrying.")
        if isinstance(event, ExperimentFinished):
            return
        if event.ts - self._last_status >= _STATUS_EVERY_S and self._trials:
            if self._last_status:
                self.console.print(self._status_line())
            self._last_status = event.ts

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._say_failed(trial, "errored")

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        if trial.status == ERROR:  # stopped (time budget, ...) while its retries failed
            self._say_failed(trial, f"ended ({trial.end_reason}) while failing")
        elif self.verbose >= 2:
            self._say(f"Trial {trial.trial_name} completed ({trial.end_reason}).")

    def _say_failed(self, trial: Trial, what: str) -> None:
        error = trial.error
        cause = f"{error.type_name}: {error.message}" if error is not None else "unknown error"
        error_file = os.path.join(trial.path, ERROR_FILE)
        self._say(f"Trial {trial.trial_name} {what}: {cause}. Error file: {error_file}")

    def _say(self, line: str) -> None:
        # Messages are user text: brackets in them are not rich markup; lines are not
        # wrapped, so a path can be copied.
        self.console.print(line, markup=False, soft_wrap=True)  # paths stay whole

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._trials = {t.trial_id: t for t in trials}

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._trials = {t.trial_id: t for t in trials}
        self.console.print(self._status_line())
        self.console.print(self._table(trials))

    # ------------------------------------------------------------------ rendering
    def _status_line(self) -> str:
        counts = Counter(t.status for t in self._trials.values())
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        line = f"== {len(self._trials)} trials: {parts}"
        best = self._best(list(self._trials.values()))
        if best is not None and self.metric is not None:
            value = best.last_result[self.metric]
            line += f" | best {self.metric}={value:.4g} ({best.trial_name})"
        return line

    def _best(self, trials: list[Trial]) -> Trial | None:
        metric = self.metric
        if metric is None or self.mode not in ("min", "max"):
            return None
        scored = [t for t in trials if isinstance(t.last_result.get(metric), (int, float))]
        if not scored:
            return None
        pick = min if self.mode == "min" else max
        return pick(scored, key=lambda t: t.last_result[metric])

    def _table(self, trials: list[Trial]) -> Table:
        params = sorted({k for t in trials for k, v in t.config.items() if _scalar(v)})[:5]
        table = Table(title="Trials")
        table.add_column("trial", no_wrap=True)
        for column in ["status", "iter", *params]:
            table.add_column(column)
        if self.metric:
            table.add_column(self.metric)
        for trial in trials[:_MAX_ROWS]:
            row = [
                trial.trial_name,
                trial.status,
                str(trial.last_result.get("training_iteration", "")),
            ]
            row += [_fmt(trial.config.get(p)) for p in params]
            if self.metric:
                row.append(_fmt(trial.last_result.get(self.metric)))
            table.add_row(*row)
        if len(trials) > _MAX_ROWS:
            table.caption = f"... and {len(trials) - _MAX_ROWS} more"
        return table


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
