"""Progress output for people, where they look: a live terminal table, a notebook output,
or plain lines in logs.

``RunConfig(verbose=...)``: 0 writes nothing (no display is made); 1 (the default) shows
the experiment's status and trial table, one line per trial that ends in error (the
exception's type and message, and the path of its ``error.txt``), and the table at the
end; 2 also shows one line per finished trial and per failed attempt that is retried.

Where it goes:

* **Notebook** (an IPython kernel is running, or a ``JupyterNotebookReporter`` was given
  under IPython): one output, made with ``IPython.display.display(..., display_id=True)``
  and updated in place. It carries ``text/html`` (the status line and an HTML table) and
  ``text/plain`` (the same as text, with no escape codes). Messages (failed trials) are
  part of that output, not new outputs.
* **Terminal** (stdout is a terminal): a ``rich.live.Live`` display, refreshed in place
  (at most every ``max_report_frequency`` seconds, default 1 s); messages are printed
  above it; the final table stays.
* **Anything else** (CI logs, pipes, files): plain lines, a status line at most every
  ``max_report_frequency`` seconds (default 5 s) and the table at the end.

The notebook is detected without importing IPython: only when ``IPython`` is already
imported and its shell has a kernel. ``RunConfig(progress_reporter=...)`` takes Ray
Tune's reporters (see :mod:`atune.progress_reporter`). The cost per event is one clock
comparison; tables are built only when the display refreshes. Programs should subscribe
to events (``Callback.on_event``) rather than parse this output.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Protocol

from rich.console import Console

from atune._log import get_logger
from atune._progress_view import View, error_lines, html_text, plain_text, rich_renderable
from atune._trial import ERROR, Trial
from atune.callback import Callback
from atune.events import Event, ExperimentFinished, TrialErrored
from atune.progress_reporter import (
    JupyterNotebookReporter,
    ProgressReporter as UserReporter,
    TuneReporterBase,
)
from atune.storage._layout import ERROR_FILE

__all__ = ["ProgressReporter", "in_notebook"]

_log = get_logger(__name__)

_PLAIN_EVERY_S = 5.0
_LIVE_EVERY_S = 1.0
_CUSTOM_EVERY_S = 1.0
_MAX_MESSAGES = 20


def in_notebook() -> bool:
    """Whether this process is an IPython kernel (Jupyter, VS Code, Colab, ...).

    Cheap, and never imports IPython: a kernel has imported it already.
    """
    ipython = sys.modules.get("IPython")
    get_ipython = getattr(ipython, "get_ipython", None)
    if get_ipython is None:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Display(Protocol):
    interval: float

    def tick(self, trials: list[Trial]) -> None: ...
    def say(self, line: str) -> None: ...
    def end(self, trials: list[Trial]) -> None: ...


class ProgressReporter(Callback):
    """Shows experiment progress (see the module docstring).

    Args:
        verbose: 1 or 2 (at 0, make none).
        metric: ``TuneConfig.metric`` (a reporter's own ``metric`` wins).
        mode: ``TuneConfig.mode``.
        console: Where terminal or plain output goes (default: stdout).
        reporter: ``RunConfig.progress_reporter``: a ``CLIReporter``,
            ``JupyterNotebookReporter``, or a user's ``ProgressReporter`` subclass.
    """

    def __init__(
        self,
        verbose: int,
        *,
        metric: str | None = None,
        mode: str | None = None,
        console: Console | None = None,
        reporter: UserReporter | None = None,
    ) -> None:
        self.verbose = verbose
        options = reporter if isinstance(reporter, TuneReporterBase) else None
        self.view = View(metric, mode, options)
        self.metric = self.view.metric
        self.mode = self.view.mode
        self.reporter = reporter
        self.display = _choose_display(reporter, options, console, self.view)
        self._last = 0.0
        self._trials: list[Trial] = []
        self._by_id: dict[str, Trial] = {}

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        reporter = self.reporter
        if reporter is None:
            return
        if isinstance(reporter, TuneReporterBase):
            if reporter._total_samples is None and total_num_samples:
                self.view.total_samples = total_num_samples
            return
        reporter.set_search_properties(self.metric, self.mode)
        if total_num_samples:
            reporter.set_total_samples(total_num_samples)
        reporter.setup(
            start_time=time.time(),
            total_samples=total_num_samples,
            metric=self.metric,
            mode=self.mode,
        )

    def on_event(self, event: Event) -> None:
        if self.verbose >= 2 and isinstance(event, TrialErrored) and event.will_retry:
            trial = self._by_id.get(event.trial_id)
            name = trial.trial_name if trial else event.trial_id
            self.display.say(
                f"Trial {name} errored: {event.error_type}: {event.message}. Retrying."
            )
        if isinstance(event, ExperimentFinished) or not self._trials:
            return
        if event.ts - self._last >= self.display.interval:  # the only per-event work
            self._last = event.ts
            self.display.tick(self._trials)

    def on_trial_start(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._trials = trials
        self._by_id[trial.trial_id] = trial

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
            self.display.say(f"Trial {trial.trial_name} completed ({trial.end_reason}).")

    def _say_failed(self, trial: Trial, what: str) -> None:
        error = trial.error
        cause = f"{error.type_name}: {error.message}" if error is not None else "unknown error"
        error_file = os.path.join(trial.path, ERROR_FILE)
        self.display.say(f"Trial {trial.trial_name} {what}: {cause}. Error file: {error_file}")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self._trials = list(trials)
        self.display.end(self._trials)


def _choose_display(
    reporter: UserReporter | None,
    options: TuneReporterBase | None,
    console: Console | None,
    view: View,
) -> _Display:
    frequency = options._max_report_frequency if options is not None else None
    if reporter is not None and options is None:
        return _CustomDisplay(reporter, view, console or _stdout_console())
    if in_notebook() or (
        isinstance(reporter, JupyterNotebookReporter) and "IPython" in sys.modules
    ):
        overwrite = reporter._overwrite if isinstance(reporter, JupyterNotebookReporter) else True
        return _NotebookDisplay(view, _LIVE_EVERY_S if frequency is None else frequency, overwrite)
    if isinstance(reporter, JupyterNotebookReporter):
        _log.warning(
            "JupyterNotebookReporter given outside a notebook (IPython is not running); "
            "showing progress in the terminal instead"
        )
    console = console or _stdout_console()
    if console.is_terminal:
        return _LiveDisplay(view, console, _LIVE_EVERY_S if frequency is None else frequency)
    tables = bool(options is not None and options._print_intermediate_tables)
    return _PlainDisplay(view, console, _PLAIN_EVERY_S if frequency is None else frequency, tables)


def _stdout_console() -> Console:
    return Console(highlight=False, force_jupyter=False)


def _print_line(console: Console, line: str) -> None:
    # Messages are user text: brackets in them are not rich markup; lines are not
    # wrapped, so a path can be copied.
    console.print(line, markup=False, soft_wrap=True, highlight=False)


class _PlainDisplay:
    """Plain lines: a status line now and then, the table at the end."""

    def __init__(self, view: View, console: Console, interval: float, tables: bool) -> None:
        self.view = view
        self.console = console
        self.interval = interval
        self.tables = tables
        self._started = False

    def tick(self, trials: list[Trial]) -> None:
        if not self._started:  # the first status would only say "1 RUNNING"
            self._started = True
            return
        if self.tables:
            self.console.print(rich_renderable(self.view.snapshot(trials)))
        else:
            _print_line(self.console, self.view.status_line(trials))

    def say(self, line: str) -> None:
        _print_line(self.console, line)

    def end(self, trials: list[Trial]) -> None:
        snapshot = self.view.snapshot(trials)
        _print_line(self.console, snapshot.status)
        self.console.print(rich_renderable(snapshot, with_status=False, with_errors=False))
        for line in error_lines(snapshot):
            _print_line(self.console, line)


class _LiveDisplay:
    """A ``rich.live.Live`` table and status line, redrawn in place in a terminal."""

    def __init__(self, view: View, console: Console, interval: float) -> None:
        self.view = view
        self.console = console
        self.interval = interval
        self.live: Any = None

    def tick(self, trials: list[Trial]) -> None:
        renderable = rich_renderable(self.view.snapshot(trials))
        if self.live is None:
            from rich.live import Live

            # No refresh thread: the display is redrawn when progress is made, on the
            # caller's task; stdout is left alone (not redirected).
            self.live = Live(
                renderable,
                console=self.console,
                auto_refresh=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self.live.start(refresh=True)
        else:
            self.live.update(renderable, refresh=True)

    def say(self, line: str) -> None:
        _print_line(self.console, line)  # rich prints it above the live display

    def end(self, trials: list[Trial]) -> None:
        self.tick(trials)
        self.live.stop()


class _NotebookDisplay:
    """One notebook output (HTML and plain text), updated in place."""

    def __init__(self, view: View, interval: float, overwrite: bool) -> None:
        self.view = view
        self.interval = interval
        self.overwrite = overwrite
        self.handle: Any = None
        self.messages: list[str] = []
        self._trials: list[Trial] = []

    def _bundle(self, trials: list[Trial]) -> dict[str, str]:
        snapshot = self.view.snapshot(trials)
        return {
            "text/html": html_text(snapshot, self.messages),
            "text/plain": plain_text(snapshot, self.messages),
        }

    def tick(self, trials: list[Trial]) -> None:
        self._trials = trials
        from IPython.display import display

        bundle = self._bundle(trials)
        if self.handle is None or not self.overwrite:
            self.handle = display(bundle, raw=True, display_id=True)  # type: ignore[no-untyped-call]
        else:
            self.handle.update(bundle, raw=True)

    def say(self, line: str) -> None:
        self.messages = [*self.messages, line][-_MAX_MESSAGES:]
        self.tick(self._trials)

    def end(self, trials: list[Trial]) -> None:
        self.tick(trials)


class _CustomDisplay:
    """A user's ``ProgressReporter`` subclass, called as Ray Tune calls it."""

    def __init__(self, reporter: UserReporter, view: View, console: Console) -> None:
        self.reporter = reporter
        self.view = view
        self.console = console
        self.interval = _CUSTOM_EVERY_S

    def tick(self, trials: list[Trial]) -> None:
        if self.reporter.should_report(trials, done=False):
            self.reporter.report(trials, False, self.view.status_line(trials))

    def say(self, line: str) -> None:
        _print_line(self.console, line)

    def end(self, trials: list[Trial]) -> None:
        self.reporter.should_report(trials, done=True)
        self.reporter.report(trials, True, self.view.status_line(trials))
