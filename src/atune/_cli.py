"""The ``atune`` command line: list, show and resume experiments.

::

    atune ls [STORAGE]                       experiments under a storage path
    atune show EXPERIMENT                    one experiment's trials and best result
    atune resume EXPERIMENT --trainable M:F  continue an interrupted experiment

``python -m atune`` is the same program. ``STORAGE`` defaults to what ``RunConfig`` uses:
``$ATUNE_STORAGE_PATH``, else ``~/atune_results``.

``ls`` and ``show`` read experiments with :func:`atune.load_results`, which takes no lock
and writes nothing, so they work on an experiment another process is running (showing what
its journal holds so far). ``resume`` runs ``Tuner.restore(EXPERIMENT, trainable).fit()``
in this process and then prints what ``show`` prints.

Exit status: 0 success; 1 the command ran but failed (a trial of ``resume`` ended in
error, the experiment is locked by a running ``fit()``, or its files are damaged); 2 bad
usage (unknown option, a path that is not an experiment or storage directory, a
``--trainable`` that cannot be imported). Errors are one line on stderr, no traceback;
Ctrl-C exits with 130.

atune is imported only once the command line is parsed, so ``atune --help`` is fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atune.result import ResultGrid

__all__ = ["main"]

_EXIT_FAILED = 1
_EXIT_USAGE = 2
_EXIT_INTERRUPTED = 130


class _UsageError(Exception):
    """The command line names something that cannot be used (exit status 2)."""


class _Failed(Exception):
    """The command ran but failed (exit status 1)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the ``atune`` command line and returns its exit status.

    Args:
        argv: The arguments after the program name; default ``sys.argv[1:]``.

    Returns:
        0 on success, 1 when the command failed, 2 on bad usage, 130 on Ctrl-C.
    """
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except _UsageError as exc:
        parser.exit(_EXIT_USAGE, f"{parser.prog}: error: {exc}\n")
    except _Failed as exc:
        parser.exit(_EXIT_FAILED, f"{parser.prog}: error: {exc}\n")
    except KeyboardInterrupt:
        parser.exit(_EXIT_INTERRUPTED, f"{parser.prog}: interrupted\n")
    return status


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atune",
        description="List, show and resume atune experiments.",
        epilog="Exit status: 0 ok, 1 failed (errored trials, locked or damaged "
        "experiment), 2 bad usage.",
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    ls = commands.add_parser(
        "ls",
        help="list the experiments under a storage path",
        description="List the experiments under STORAGE: name, trials by status, start "
        "time and best result (when the experiment has a metric).",
    )
    ls.add_argument(
        "storage",
        nargs="?",
        help="the storage path (default: $ATUNE_STORAGE_PATH, else ~/atune_results)",
    )
    ls.set_defaults(run=_ls)

    show = commands.add_parser(
        "show",
        help="show an experiment's trials and best result",
        description="Show the trials of EXPERIMENT and its best result. Safe while the "
        "experiment runs: reads its journal without a lock and writes nothing.",
    )
    show.add_argument("experiment", help="the experiment directory (<storage>/<name>)")
    show.add_argument("--metric", help="the metric to rank by (default: the experiment's)")
    show.add_argument(
        "--mode", choices=("min", "max"), help="min or max (default: the experiment's)"
    )
    show.set_defaults(run=_show)

    resume = commands.add_parser(
        "resume",
        help="continue an interrupted experiment",
        description="Continue EXPERIMENT with Tuner.restore(EXPERIMENT, trainable).fit(), "
        "then show its results. Exit status 1 when a trial ended in error.",
    )
    resume.add_argument("experiment", help="the experiment directory (<storage>/<name>)")
    resume.add_argument(
        "--trainable",
        required=True,
        metavar="MODULE:NAME",
        help="the trainable to import, e.g. train:objective or mypkg.models:Trainer "
        "(the current directory is searched first, as with python -m)",
    )
    errored = resume.add_mutually_exclusive_group()
    errored.add_argument(
        "--resume-errored",
        action="store_true",
        help="also resume errored trials from their latest checkpoint",
    )
    errored.add_argument(
        "--restart-errored",
        action="store_true",
        help="also run errored trials again from scratch",
    )
    resume.set_defaults(run=_resume)
    return parser


# ------------------------------------------------------------------------------ commands


def _ls(args: argparse.Namespace) -> int:
    from atune.errors import TuneError

    storage = _storage_path(args.storage)
    experiments = sorted(
        child for child in storage.iterdir() if child.is_dir() and _is_experiment(child)
    )
    if not experiments:
        print(f"no experiments under {storage}")
        return 0
    rows = []
    for path in experiments:
        try:
            grid = _load(path)
        except (TuneError, _Failed) as exc:
            rows.append([path.name, f"unreadable: {exc}", "-", "-"])
            continue
        rows.append([path.name, _status_summary(grid), _started(path), _best_text(grid)])
    rows.sort(key=lambda row: (row[2], row[0]))
    print(f"experiments under {storage}:")
    print(_table(["NAME", "TRIALS", "STARTED", "BEST"], rows))
    return 0


def _show(args: argparse.Namespace) -> int:
    path = _experiment_path(args.experiment)
    grid = _load(path)
    print(_report(grid, path, args.metric, args.mode))
    return 0


def _resume(args: argparse.Namespace) -> int:
    path = _experiment_path(args.experiment)
    trainable = _import_trainable(args.trainable)

    from atune.errors import ExperimentLockedError, TuneError
    from atune.result import ResultGrid
    from atune.tuner import Tuner

    try:
        tuner = Tuner.restore(
            str(path),
            trainable,
            resume_errored=args.resume_errored,
            restart_errored=args.restart_errored,
        )
        grid = tuner.fit()
    except ExperimentLockedError as exc:
        raise _Failed(str(exc)) from exc
    except TuneError as exc:
        raise _Failed(f"{type(exc).__name__}: {exc}") from exc
    assert isinstance(grid, ResultGrid)  # fit() outside an event loop returns the grid
    print(_report(grid, path, None, None))
    if grid.num_errors:
        print(
            f"{grid.num_errors} trial(s) ended in error; see error.txt in their directories",
            file=sys.stderr,
        )
        return _EXIT_FAILED
    return 0


# ------------------------------------------------------------------------------ reading


def _storage_path(given: str | None) -> Path:
    from atune.config import _default_storage_path

    path = Path(given if given is not None else _default_storage_path()).expanduser()
    if not path.is_dir():
        raise _UsageError(f"storage path {str(path)!r} is not a directory")
    return path.resolve()


def _is_experiment(path: Path) -> bool:
    from atune.storage._layout import JOURNAL_FILE, SPEC_FILE

    return (path / SPEC_FILE).is_file() and (path / JOURNAL_FILE).is_file()


def _experiment_path(given: str) -> Path:
    path = Path(given).expanduser()
    if not _is_experiment(path):
        raise _UsageError(
            f"{given!r} is not an atune experiment directory (it needs experiment.json "
            "and events.jsonl); `atune ls STORAGE` lists the experiments under a storage path"
        )
    return path.resolve()


def _load(path: Path) -> ResultGrid:
    from atune import load_results
    from atune.errors import StorageError

    try:
        return load_results(path)
    except StorageError as exc:
        raise _Failed(str(exc)) from exc


def _started(path: Path) -> str:
    """The local time of the experiment's first journal event; "-" when unreadable."""
    import time

    import msgspec

    from atune.events import decode_event
    from atune.storage._layout import JOURNAL_FILE

    try:
        with (path / JOURNAL_FILE).open("rb") as journal:
            first = journal.readline()
        ts = decode_event(first).ts
    except (OSError, msgspec.DecodeError, ValueError):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _import_trainable(spec: str) -> Any:
    import importlib

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise _UsageError(f"--trainable must be MODULE:NAME (e.g. train:objective), got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)  # as `python -m` does; a console script's path lacks it
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise _UsageError(
            f"--trainable {spec!r}: cannot import module {module_name!r}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise _UsageError(
                f"--trainable {spec!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if not callable(target):
        raise _UsageError(f"--trainable {spec!r} is not a function or Trainable class")
    return target


# ------------------------------------------------------------------------------ printing


def _report(grid: ResultGrid, path: Path, metric: str | None, mode: str | None) -> str:
    metric = metric or grid.metric
    mode = mode or grid.mode
    lines = [f"experiment {path.name} ({path})"]
    if metric:
        lines.append(f"metric: {metric}" + (f" ({mode})" if mode else ""))
    lines.append(f"trials: {len(grid)} ({_status_summary(grid)})")
    if len(grid):
        lines.extend(["", _results_table(grid, metric)])
    lines.extend(["", _best_block(grid, metric, mode)])
    return "\n".join(lines)


def _status_summary(grid: ResultGrid) -> str:
    from collections import Counter

    counts = Counter(grid.statuses)
    if not counts:
        return "none yet"
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))


def _results_table(grid: ResultGrid, metric: str | None) -> str:
    from atune._flatten import flatten_dict

    params: dict[str, None] = {}
    for result in grid:
        params.update(dict.fromkeys(flatten_dict(result.config or {}, delimiter="/")))
    errored = grid.num_errors > 0
    headers = ["TRIAL", "STATUS", "ITER"]
    if metric:
        headers.append(metric)
    headers.extend(params)
    if errored:
        headers.append("ERROR")
    rows = []
    for result, status in zip(grid, grid.statuses, strict=True):
        metrics = flatten_dict(result.metrics or {}, delimiter="/")
        config = flatten_dict(result.config or {}, delimiter="/")
        row = [_trial_id(result), status, _cell(metrics.get("training_iteration"))]
        if metric:
            row.append(_cell(metrics.get(metric)))
        row.extend(_cell(config.get(name)) for name in params)
        if errored:
            row.append(_error_name(result.error))
        rows.append(row)
    return _table(headers, rows)


def _best_text(grid: ResultGrid) -> str:
    if not grid.metric or not grid.mode:
        return "-"
    best = _best(grid, grid.metric, grid.mode)
    if best is None:
        return "-"
    value = _metric_value(best, grid.metric)
    return f"{grid.metric}={_cell(value)} ({grid.mode})"


def _best_block(grid: ResultGrid, metric: str | None, mode: str | None) -> str:
    if not metric or not mode:
        return "best result: the experiment has no metric and mode; pass --metric and --mode"
    best = _best(grid, metric, mode)
    if best is None:
        return f"best result: no trial has reported {metric!r} yet"
    return "\n".join(
        [
            f"best result ({metric}, {mode}): trial {_trial_id(best)}",
            f"  {metric}: {_cell(_metric_value(best, metric))}",
            f"  config: {best.config}",
            f"  path: {best.path}",
        ]
    )


def _best(grid: ResultGrid, metric: str, mode: str) -> Any:
    """The best result, or None when no trial reported ``metric``."""
    from atune.errors import ConfigError

    try:
        best = grid.get_best_result(metric, mode)
    except (RuntimeError, ConfigError):
        return None
    # With one trial get_best_result returns it whatever it reported.
    return best if _metric_value(best, metric) is not None else None


def _metric_value(result: Any, metric: str) -> Any:
    from atune._flatten import flatten_dict

    return flatten_dict(result.metrics or {}, delimiter="/").get(metric)


def _trial_id(result: Any) -> str:
    trial_id = (result.metrics or {}).get("trial_id")
    return trial_id if isinstance(trial_id, str) else Path(result.path).name


def _error_name(error: BaseException | None) -> str:
    if error is None:
        return ""
    name = getattr(error, "error_type", "") or type(error).__name__
    return str(name).rsplit(".", 1)[-1]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 30 else text[:29] + "…"


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [headers, *rows]
    ]
    return "\n".join(lines)
