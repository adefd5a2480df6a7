"""What the progress display shows: a status line and tables, rendered for each medium.

:class:`View` holds the options (columns, rows, sort) and turns the live trials into a
:class:`Snapshot` (plain strings), which is rendered as a ``rich`` table (terminal),
HTML (notebook) or plain text (``text/plain``, with no escape codes).
"""

from __future__ import annotations

import html
import io
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from atune._trial import ERROR, Trial
from atune.progress_reporter import TuneReporterBase
from atune.storage._layout import ERROR_FILE

__all__ = ["Snapshot", "View"]

_DEFAULT_METRICS = {"training_iteration": "iter", "time_total_s": "total time (s)"}


@dataclass
class Snapshot:
    """One rendering's content, as strings."""

    status: str
    headers: list[str]
    rows: list[list[str]]
    caption: str = ""
    error_rows: list[list[str]] = field(default_factory=list)
    error_caption: str = ""


class View:
    """Turns trials into a :class:`Snapshot` following a reporter's options.

    Args:
        metric: The metric for "best" and sorting (the reporter's wins).
        mode: ``"min"`` or ``"max"`` (the reporter's wins).
        reporter: A ``CLIReporter``/``JupyterNotebookReporter`` whose options apply.
    """

    def __init__(
        self, metric: str | None, mode: str | None, reporter: TuneReporterBase | None
    ) -> None:
        self.reporter = reporter
        self.metric = (reporter._metric if reporter else None) or metric
        self.mode = (reporter._mode if reporter else None) or mode
        self.metric_columns = reporter._metric_columns if reporter else None
        self.parameter_columns = reporter._parameter_columns if reporter else None
        self.max_rows = reporter._max_progress_rows if reporter else 20
        self.max_error_rows = reporter._max_error_rows if reporter else 20
        self.max_length = reporter._max_column_length if reporter else 20
        self.infer_limit = reporter._infer_limit if reporter else 5
        self.sort_by_metric = reporter._sort_by_metric if reporter else False
        self.total_samples = reporter._total_samples if reporter else None

    # ------------------------------------------------------------------ content
    def status_line(self, trials: list[Trial]) -> str:
        """``== N trials: 1 RUNNING, ... | best loss=0.1 (name)``."""
        counts = Counter(t.status for t in trials)
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        total = f"/{self.total_samples}" if self.total_samples else ""
        line = f"== {len(trials)}{total} trials: {parts}"
        best = self.best(trials)
        if best is not None and self.metric is not None:
            value = best.last_result[self.metric]
            line += f" | best {self.metric}={value:.4g} ({best.trial_name})"
        return line

    def best(self, trials: list[Trial]) -> Trial | None:
        """The trial with the best last ``metric``, if metric and mode are known."""
        scored = self._scored(trials)
        if not scored or self.metric is None:
            return None
        metric = self.metric
        pick = min if self.mode == "min" else max
        return pick(scored, key=lambda t: t.last_result[metric])

    def _scored(self, trials: list[Trial]) -> list[Trial]:
        metric = self.metric
        if metric is None or self.mode not in ("min", "max"):
            return []
        return [t for t in trials if isinstance(t.last_result.get(metric), (int, float))]

    def snapshot(self, trials: list[Trial]) -> Snapshot:
        """The status line and tables of ``trials`` now."""
        params = self.parameter_columns
        if params is None:
            keys = sorted({k for t in trials for k, v in t.config.items() if _scalar(v)})
            params = {k: k for k in keys[: self.infer_limit]}
        metrics = self.metric_columns
        if metrics is None:
            metrics = dict(_DEFAULT_METRICS)
            if self.metric:
                metrics[self.metric] = self.metric
        ordered = list(trials)
        if self.sort_by_metric:
            scored = self._scored(trials)
            ranked = sorted(
                scored,
                key=lambda t: t.last_result[self.metric],  # type: ignore[index]
                reverse=self.mode == "max",
            )
            ranked_ids = {id(t) for t in ranked}
            ordered = ranked + [t for t in trials if id(t) not in ranked_ids]
        cut = self._cut
        headers = [cut("trial"), "status", *map(cut, params.values()), *map(cut, metrics.values())]
        rows = [
            [
                cut(t.trial_name),
                t.status,
                *(cut(_fmt(_lookup(t.config, p))) for p in params),
                *(cut(_fmt(_lookup(t.last_result, m))) for m in metrics),
            ]
            for t in ordered[: self.max_rows]
        ]
        caption = ""
        if len(ordered) > self.max_rows:
            rest = Counter(t.status for t in ordered[self.max_rows :])
            more = ", ".join(f"{n} {status}" for status, n in sorted(rest.items()))
            caption = f"... and {len(ordered) - self.max_rows} more ({more})"
        failed = [t for t in trials if t.status == ERROR]
        error_rows = [
            [cut(t.trial_name), str(t.num_failures), os.path.join(t.path, ERROR_FILE)]
            for t in failed[: self.max_error_rows]
        ]
        error_caption = ""
        if len(failed) > self.max_error_rows:
            error_caption = f"... and {len(failed) - self.max_error_rows} more failed"
        return Snapshot(self.status_line(trials), headers, rows, caption, error_rows, error_caption)

    def _cut(self, text: str) -> str:
        if len(text) <= self.max_length:
            return text
        return text[: self.max_length - 1] + "…"


# ---------------------------------------------------------------------- rendering
_ERROR_HEADERS = ["trial", "# failures", "error file"]


def error_lines(snapshot: Snapshot) -> list[str]:
    """``Failed trials:`` and one line per failed trial, with its error file."""
    lines = [
        f"{name} (failed attempts: {failures}): {path}"
        for name, failures, path in snapshot.error_rows
    ]
    if snapshot.error_caption:
        lines.append(snapshot.error_caption)
    return ["Failed trials:", *lines] if lines else []


def rich_renderable(
    snapshot: Snapshot, *, with_status: bool = True, with_errors: bool = True
) -> Any:
    """A ``rich`` renderable: the trial table, the failed trials, the status line."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Trials", caption=snapshot.caption or None)
    for header in snapshot.headers:
        table.add_column(header, no_wrap=header == snapshot.headers[0])
    for row in snapshot.rows:
        table.add_row(*row)
    parts: list[Any] = [table]
    if snapshot.error_rows and with_errors:
        # Lines, not a table, so paths are not broken up; a live display crops them at
        # the terminal's width (the whole path is in the message printed above it).
        text = "\n".join(error_lines(snapshot))
        parts.append(Text(text, no_wrap=True, overflow="ellipsis"))
    if with_status:
        parts.append(Text(snapshot.status))
    return Group(*parts)


def plain_text(snapshot: Snapshot, messages: list[str], width: int = 120) -> str:
    """The snapshot as text with no escape codes (a notebook's ``text/plain``)."""
    from rich.console import Console

    buffer = io.StringIO()
    console = Console(
        file=buffer, width=width, color_system=None, force_terminal=False, force_jupyter=False
    )
    console.print(rich_renderable(snapshot), markup=False)
    for message in messages:
        console.print(message, markup=False, soft_wrap=True)
    return buffer.getvalue()


def html_text(snapshot: Snapshot, messages: list[str]) -> str:
    """The snapshot as an HTML fragment (a notebook's ``text/html``)."""
    out = [f"<div class='atune-progress'><p><b>{html.escape(snapshot.status)}</b></p>"]
    out.append(_html_table(snapshot.headers, snapshot.rows, snapshot.caption))
    if snapshot.error_rows:
        out.append(_html_table(_ERROR_HEADERS, snapshot.error_rows, snapshot.error_caption))
    out += [f"<pre>{html.escape(message)}</pre>" for message in messages]
    out.append("</div>")
    return "".join(out)


def _html_table(headers: list[str], rows: list[list[str]], caption: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _lookup(values: dict[str, Any], key: str) -> Any:
    if key in values:
        return values[key]
    node: Any = values
    for part in key.split("/"):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
