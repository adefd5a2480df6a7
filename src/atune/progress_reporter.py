"""Ray Tune's progress reporters: ``CLIReporter``, ``JupyterNotebookReporter``, ``ProgressReporter``.

Pass one as ``RunConfig(progress_reporter=...)`` to choose what the progress display
shows and how often it refreshes; without one, atune picks the display for where the
program runs (see ``atune._progress``). The options are Ray Tune's, with the same
defaults:

* ``metric_columns`` / ``parameter_columns``: a list of result (config) keys, or a dict
  of key to column header. Nested keys are written with ``/`` (``"model/lr"``). Without
  ``parameter_columns``, the first ``infer_limit`` scalar config keys are shown.
* ``total_samples``: shown in the status line as ``n/total``.
* ``max_progress_rows``, ``max_error_rows``: rows of the trial table and of the table of
  failed trials; the rest is counted in a caption.
* ``max_column_length``: cells and headers longer than this are cut with ``…``.
* ``max_report_frequency``: seconds between two refreshes (default: 1 for a live display,
  5 for plain lines).
* ``print_intermediate_tables``: in plain-line output, print the trial table at every
  report, not only at the end (a live display always shows it).
* ``metric``, ``mode``: the metric the status line's "best" and ``sort_by_metric`` use
  (default: ``TuneConfig``'s).
* ``sort_by_metric``: best trials first.
* ``overwrite`` (``JupyterNotebookReporter`` only): update one output in place (default)
  rather than add one per report.

Any other option is refused with :class:`~atune.errors.ConfigError` rather than ignored.
A subclass of :class:`ProgressReporter` that implements ``report`` is called as in Ray
Tune: ``setup(...)`` once, then ``should_report(trials, done)`` at most every second and,
when it says so, ``report(trials, done, *sys_info)`` with the status line.

Progress follows ``RunConfig.verbose``: at ``verbose=0`` no reporter is called and
nothing is written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from atune.errors import ConfigError

__all__ = ["CLIReporter", "JupyterNotebookReporter", "ProgressReporter", "TuneReporterBase"]

_COMMON_OPTIONS = (
    "metric_columns",
    "parameter_columns",
    "total_samples",
    "max_progress_rows",
    "max_error_rows",
    "max_column_length",
    "max_report_frequency",
    "infer_limit",
    "print_intermediate_tables",
    "metric",
    "mode",
    "sort_by_metric",
)


class ProgressReporter:
    """Base class of progress reporters (Ray Tune's interface).

    Subclass it and implement :meth:`report` (and optionally :meth:`should_report`) to
    print progress your own way. The ``trials`` passed are atune's live trial objects
    (``trial_id``, ``trial_name``, ``status``, ``config``, ``last_result``).
    """

    def setup(
        self,
        start_time: float | None = None,
        total_samples: int | None = None,
        metric: str | None = None,
        mode: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Called once when the experiment starts (``start_time`` is ``time.time()``)."""

    def should_report(self, trials: list[Any], done: bool = False) -> bool:
        """Whether :meth:`report` should be called now; always at the end (``done``)."""
        return True

    def report(self, trials: list[Any], done: bool, *sys_info: Any) -> None:
        """Show progress; ``sys_info`` holds the status line."""
        raise NotImplementedError

    def set_search_properties(self, metric: str | None, mode: str | None) -> bool:
        """Set the metric and mode if not set yet; ``True`` (as Ray Tune)."""
        return True

    def set_total_samples(self, total_samples: int) -> None:
        """Record the number of samples (shown as ``n/total``)."""


class TuneReporterBase(ProgressReporter):
    """The options shared by :class:`CLIReporter` and :class:`JupyterNotebookReporter`.

    Args:
        **options: See the module docstring. Unknown options raise ``ConfigError``.

    Raises:
        ConfigError: an option atune does not know, or a value of the wrong kind; the
            message names it.
    """

    _extra_options: tuple[str, ...] = ()

    def __init__(self, **options: Any) -> None:
        allowed = (*_COMMON_OPTIONS, *self._extra_options)
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise ConfigError(
                f"{type(self).__name__} does not support the option(s) {', '.join(unknown)}; "
                f"supported: {', '.join(allowed)}",
                value=unknown[0],
            )
        self._metric_columns = _columns("metric_columns", options.get("metric_columns"))
        self._parameter_columns = _columns("parameter_columns", options.get("parameter_columns"))
        self._total_samples = _positive("total_samples", options.get("total_samples"), none=True)
        self._max_progress_rows = _positive(
            "max_progress_rows", options.get("max_progress_rows", 20)
        )
        self._max_error_rows = _positive("max_error_rows", options.get("max_error_rows", 20))
        self._max_column_length = _positive(
            "max_column_length", options.get("max_column_length", 20)
        )
        self._infer_limit = _positive("infer_limit", options.get("infer_limit", 3))
        frequency = options.get("max_report_frequency")
        if frequency is not None and (
            isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency < 0
        ):
            raise ConfigError(
                f"max_report_frequency must be a number of seconds >= 0, got {frequency!r}",
                value=frequency,
            )
        self._max_report_frequency: float | None = frequency
        self._print_intermediate_tables: bool | None = options.get("print_intermediate_tables")
        self._metric: str | None = options.get("metric")
        self._mode: str | None = options.get("mode")
        if self._mode not in (None, "min", "max"):
            raise ConfigError(f"mode must be 'min' or 'max', got {self._mode!r}", value=self._mode)
        self._sort_by_metric = bool(options.get("sort_by_metric", False))

    def add_metric_column(self, metric: str, representation: str | None = None) -> None:
        """Show ``metric`` as a column (headed ``representation``, default the key).

        Raises:
            ValueError: the column is already shown (as in Ray Tune).
        """
        columns = self._metric_columns if self._metric_columns is not None else {}
        if metric in columns:
            raise ValueError(f"column {metric!r} is already shown")
        columns[metric] = representation or metric
        self._metric_columns = columns

    def add_parameter_column(self, parameter: str, representation: str | None = None) -> None:
        """Show config key ``parameter`` as a column (headed ``representation``).

        Raises:
            ValueError: the column is already shown (as in Ray Tune).
        """
        columns = self._parameter_columns if self._parameter_columns is not None else {}
        if parameter in columns:
            raise ValueError(f"column {parameter!r} is already shown")
        columns[parameter] = representation or parameter
        self._parameter_columns = columns

    def set_search_properties(self, metric: str | None, mode: str | None) -> bool:
        """Use ``metric`` and ``mode`` where the reporter was given none."""
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def set_total_samples(self, total_samples: int) -> None:
        """Show the status as ``n/total_samples`` trials."""
        self._total_samples = total_samples

    def report(self, trials: list[Any], done: bool, *sys_info: Any) -> None:
        """Not called: atune's display renders these reporters itself."""


class CLIReporter(TuneReporterBase):
    """Progress in a terminal (a live table) or as plain lines (logs, pipes).

    Args:
        **options: See the module docstring.
    """


class JupyterNotebookReporter(TuneReporterBase):
    """Progress in a notebook: one output with an HTML table, updated in place.

    Args:
        **options: The common options (see the module docstring), and ``overwrite``:
            update one output in place (the default, ``True``); ``False`` adds one
            output per report.
    """

    _extra_options = ("overwrite",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._overwrite = bool(options.get("overwrite", True))


def _columns(name: str, value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, Sequence) and not isinstance(value, str):
        items = [(key, key) for key in value]
    else:
        raise ConfigError(
            f"{name} must be a list of keys or a dict of key to header, got {value!r}",
            value=value,
        )
    for key, header in items:
        if not isinstance(key, str) or not isinstance(header, str):
            raise ConfigError(f"{name} keys and headers must be strings, got {key!r}", value=key)
    return dict(items)


def _positive(name: str, value: Any, *, none: bool = False) -> Any:
    if value is None and none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}", value=value)
    return value
