"""Reading an experiment's results from its directory, without its trainable.

``atune.load_results(path)`` (also ``ResultGrid.from_path(path)``) returns the
:class:`~atune.result.ResultGrid` of a finished, interrupted or still running experiment.
It replays the experiment's journal through the controller's own state transition
(:meth:`ControllerCore.apply_journal <atune._controller._core.ControllerCore.apply_journal>`,
the same code ``Tuner.restore`` resumes from), so there is one reader of the journal, and
the grid says what the run that wrote it knew. A journal snapshot that matches the
journal (:mod:`atune._controller._snapshot`) stands in for the events it covers, so only
the journal's tail after it is decoded:

* a finished trial is complete: its last result, status, kept checkpoints and error;
* a trial still running elsewhere shows up to its last *flushed* result (the writer
  flushes a few times a second), and its ``metrics_dataframe`` stops at that same result,
  even if ``result.json`` has grown since the journal was read;
* a partial last journal line (a write in progress, or torn by a crash) is left out.

Reading takes no lock and writes nothing: not the journal (a torn tail is not cut), not
any trial file. No pickle is loaded: errors come back as
:class:`~atune.errors.TrialError` (type name, message, traceback), and the stored search
space is not decoded at all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from atune._controller._snapshot import JournalHistory, read_history, replayed_core
from atune._spec import read_spec
from atune._trial import Trial
from atune.config import CheckpointConfig, TuneConfig
from atune.errors import StorageError
from atune.events import Event
from atune.result import ResultGrid
from atune.storage._layout import JOURNAL_FILE
from atune.storage._snapshot import JournalSnapshot

if TYPE_CHECKING:
    from atune.storage._remote import RemoteStorage

__all__ = ["load_results", "replayed_trials", "stored_result_grid"]


def load_results(path: str | os.PathLike[str], storage_filesystem: Any = None) -> ResultGrid:
    """The results of the experiment in ``path``, as its journal records them now.

    Works on a finished experiment, an interrupted one, and one that another process is
    still running (a consistent snapshot; see the module docstring). Needs no trainable;
    takes no lock and writes nothing into the experiment. On remote storage its files
    (all but checkpoints) are read into a local scratch directory, which the results'
    ``path`` attributes name, and the grid's ``experiment_path`` is the URI.

    Args:
        path: The experiment directory (``<storage_path>/<name>``), or its URI on remote
            storage (``s3://bucket/prefix/name``).
        storage_filesystem: The ``pyarrow.fs.FileSystem`` the experiment is on (then
            ``path`` is a path on it).

    Returns:
        One result per trial, in creation order, with the experiment's ``metric`` and
        ``mode`` as the defaults of ``get_best_result``.

    Raises:
        StorageError: ``path`` is not an atune experiment (no ``experiment.json`` or no
            journal).
        JournalCorruptError: the journal is damaged before its last line.
    """
    from atune.storage._remote import is_remote

    storage: RemoteStorage | None
    if is_remote(os.fspath(path), storage_filesystem):
        from atune.storage._remote import open_remote_experiment

        storage, _, experiment_path, _ = open_remote_experiment(
            os.fspath(path), storage_filesystem, "load_results path"
        )
    else:
        storage = None
        experiment_path = Path(os.fspath(path)).expanduser().resolve()
    try:
        return _load(experiment_path, storage)
    except BaseException:
        if storage is not None:
            shutil.rmtree(experiment_path, ignore_errors=True)
        raise


def _load(experiment_path: Path, storage: RemoteStorage | None) -> ResultGrid:
    spec = read_spec(experiment_path)
    journal = experiment_path / JOURNAL_FILE
    if not journal.is_file():
        raise StorageError(f"{experiment_path} has no journal ({JOURNAL_FILE}) to read")
    history = read_history(experiment_path, live=True)
    return stored_result_grid(
        experiment_path,
        history.events,
        snapshot=history.snapshot,
        trainable_name=spec.trainable_name,
        tune_config=TuneConfig(metric=spec.metric, mode=spec.mode),  # type: ignore[arg-type]
        checkpoint_config=CheckpointConfig(**spec.checkpoint_config),
        storage=storage,
    )


def replayed_trials(
    experiment_path: Path,
    events: list[Event],
    *,
    trainable_name: str = "",
    snapshot: JournalSnapshot | None = None,
) -> list[Trial]:
    """The trials as ``events`` (after ``snapshot``, if any) leave them (nothing decided)."""
    history = JournalHistory(snapshot, events, 0)
    core = replayed_core(experiment_path, history, trainable_name=trainable_name)
    return list(core.get_trials())


def stored_result_grid(
    experiment_path: Path,
    events: list[Event],
    *,
    trainable_name: str,
    tune_config: TuneConfig,
    checkpoint_config: CheckpointConfig,
    snapshot: JournalSnapshot | None = None,
    storage: RemoteStorage | None = None,
) -> ResultGrid:
    """The ``ResultGrid`` that ``events`` (an experiment's journal, after ``snapshot``) describe.

    With ``storage``, ``experiment_path`` is the local mirror of an experiment on remote
    storage: the grid's ``experiment_path`` is then the storage's URI, and its
    checkpoints are in the storage.
    """
    from atune._fit import build_result_grid

    trials = replayed_trials(
        experiment_path, events, trainable_name=trainable_name, snapshot=snapshot
    )
    return build_result_grid(
        trials,
        str(experiment_path) if storage is None else storage.uri,
        tune_config,
        checkpoint_config,
        storage=storage,
    )
