"""The on-disk layout of an experiment: every name atune writes or reads, in one place.

An experiment directory looks like this (Ray Tune's layout, where Ray Tune has one)::

    <storage_path>/<experiment>/
        experiment.json                  the experiment's configuration (atune._spec)
        events.jsonl                     the event journal
        events.snapshot.json             the journal's state up to an offset (restore speed)
        .events.snapshot.json.tmp-1a2b   a snapshot being written (staging)
        .atune-lock                      held by the fit() that runs the experiment
        <trial directory>/
            params.json                  the trial's config
            result.json                  one result per line
            progress.csv                 the results, flattened
            error.txt                    one failure record per failed run
            checkpoint_000003/           a committed checkpoint (six digits or more)
                .atune_state.json        the counters saved with it
                .metadata.json           Checkpoint.set_metadata's dict
                _dict_checkpoint.json    a dict checkpoint of the function API...
                _dict_checkpoint.pkl     ...or its pickle, with a ``.sig`` signature
            .checkpoint_000004.tmp-1a2b3c4d/   a save in progress (staging)

A checkpoint is written into a staging directory and renamed to its final name only when
complete, so a reader sees either no checkpoint or a whole one; a staging directory left
by a crash is removed when the experiment is restored. Checkpoints that
:class:`~atune.trainable.Checkpoint` and ``Trainable.save`` create outside an experiment
live in the system's temporary directory, named :data:`TEMP_CHECKPOINT_PREFIX` plus a
random suffix.

``error.txt`` holds one record per failure, in the order they happened, each a header
line ``Failure # <n> (occurred at <YYYY-MM-DD_HH-MM-SS>)`` (local time, as Ray Tune
writes it) followed by the traceback. :func:`format_error_record` writes one;
:func:`parse_error_records` reads them back.

This module is the only place that knows these names and formats: everything else asks
it. It imports nothing beyond the standard library's ``os``, ``re`` and ``time``, since
the trainable runtime of every Ray worker imports it.
"""

from __future__ import annotations

import os
import re
import time
from typing import NamedTuple

__all__ = [
    "CHECKPOINT_METADATA_FILE",
    "CHECKPOINT_STATE_FILE",
    "DICT_CHECKPOINT_JSON",
    "DICT_CHECKPOINT_PICKLE",
    "ERROR_FILE",
    "JOURNAL_FILE",
    "LOCK_FILE",
    "PARAMS_FILE",
    "PROGRESS_FILE",
    "RESULT_FILE",
    "SIGNATURE_SUFFIX",
    "SNAPSHOT_FILE",
    "SPEC_FILE",
    "TEMP_CHECKPOINT_PREFIX",
    "ErrorRecord",
    "checkpoint_name",
    "format_error_record",
    "is_snapshot_staging_name",
    "is_staging_name",
    "parse_checkpoint_name",
    "parse_error_records",
    "snapshot_staging_name",
    "staging_name",
]

# ---------------------------------------------------------------- the experiment directory
SPEC_FILE = "experiment.json"
JOURNAL_FILE = "events.jsonl"
SNAPSHOT_FILE = "events.snapshot.json"
LOCK_FILE = ".atune-lock"

# ---------------------------------------------------------------- a trial directory
PARAMS_FILE = "params.json"
RESULT_FILE = "result.json"
PROGRESS_FILE = "progress.csv"
ERROR_FILE = "error.txt"

# ---------------------------------------------------------------- a checkpoint directory
CHECKPOINT_STATE_FILE = ".atune_state.json"
CHECKPOINT_METADATA_FILE = ".metadata.json"
DICT_CHECKPOINT_JSON = "_dict_checkpoint.json"
DICT_CHECKPOINT_PICKLE = "_dict_checkpoint.pkl"
SIGNATURE_SUFFIX = ".sig"
TEMP_CHECKPOINT_PREFIX = "checkpoint_tmp_"

_CHECKPOINT_PREFIX = "checkpoint_"
_CHECKPOINT_NAME = re.compile(r"checkpoint_([0-9]+)")
_STAGING_NAME = re.compile(r"\.checkpoint_[0-9]+\.tmp-.*", re.DOTALL)
_SNAPSHOT_STAGING_NAME = re.compile(re.escape(f".{SNAPSHOT_FILE}.tmp-") + r"[0-9a-f]+")
_ERROR_HEADER = re.compile(r"^Failure # ([0-9]+) \(occurred at ([^)\n]*)\)\n", re.MULTILINE)
_ERROR_LINE = re.compile(r"([A-Za-z_][\w.]*)(?::\s?(.*))?")
_TIME_FORMAT = "%Y-%m-%d_%H-%M-%S"


def checkpoint_name(index: int) -> str:
    """The directory name of checkpoint number ``index``: ``checkpoint_000003`` for 3.

    Raises:
        ValueError: ``index`` is negative.
    """
    if index < 0:
        raise ValueError(f"a checkpoint index is >= 0, got {index!r}")
    return f"{_CHECKPOINT_PREFIX}{index:06d}"


def parse_checkpoint_name(name: str) -> int | None:
    """The number of the checkpoint directory ``name`` (a base name), None for any other.

    Any number of digits is accepted (``checkpoint_3`` is 3, ``checkpoint_1000000`` is
    1000000), as a reader of an older or foreign experiment may meet them; staging
    directories and ``checkpoint_tmp_*`` are not checkpoints.
    """
    match = _CHECKPOINT_NAME.fullmatch(name)
    return int(match.group(1)) if match else None


def staging_name(index: int) -> str:
    """A fresh staging directory name for checkpoint ``index`` (random, so never reused)."""
    return f".{checkpoint_name(index)}.tmp-{os.urandom(4).hex()}"


def is_staging_name(name: str) -> bool:
    """Whether ``name`` (a base name) is a staging directory made by :func:`staging_name`."""
    return _STAGING_NAME.fullmatch(name) is not None


def snapshot_staging_name() -> str:
    """A fresh name for a snapshot being written, renamed to :data:`SNAPSHOT_FILE` when whole."""
    return f".{SNAPSHOT_FILE}.tmp-{os.urandom(4).hex()}"


def is_snapshot_staging_name(name: str) -> bool:
    """Whether ``name`` (a base name) was made by :func:`snapshot_staging_name`."""
    return _SNAPSHOT_STAGING_NAME.fullmatch(name) is not None


class ErrorRecord(NamedTuple):
    """One failure read back from ``error.txt``.

    Attributes:
        number: The failure's number (``Failure # <n>``); None for text before any header
            (a file not written by atune).
        occurred_at: The header's time stamp as written (local time); None without header.
        traceback: The record's text, stripped.
    """

    number: int | None
    occurred_at: str | None
    traceback: str

    @property
    def last_line(self) -> str:
        """The traceback's last line (``KeyError: 'x'``), or ``""``."""
        lines = self.traceback.splitlines()
        return lines[-1] if lines else ""

    @property
    def error_type(self) -> str:
        """The exception's type name from the last line (``KeyError``), or ``""``."""
        match = _ERROR_LINE.fullmatch(self.last_line)
        return match.group(1) if match else ""

    @property
    def error_message(self) -> str:
        """The exception's message from the last line; the whole line without a type name."""
        match = _ERROR_LINE.fullmatch(self.last_line)
        return (match.group(2) or "") if match else self.last_line


def format_error_record(number: int, ts: float, traceback: str) -> str:
    """The text appended to ``error.txt`` for failure number ``number`` at time ``ts``.

    Args:
        number: The trial's failure count, this failure included (1 for the first).
        ts: When it happened (seconds since the epoch); written in local time.
        traceback: The formatted traceback.
    """
    stamp = time.strftime(_TIME_FORMAT, time.localtime(ts))
    return f"Failure # {number} (occurred at {stamp})\n{traceback}\n"


def parse_error_records(text: str) -> list[ErrorRecord]:
    """The failures recorded in the text of an ``error.txt``, oldest first.

    Blank records are left out; text before the first header (or a file with no header at
    all) is one record without number and time.
    """
    records: list[ErrorRecord] = []
    number: int | None = None
    occurred_at: str | None = None
    start = 0
    for header in _ERROR_HEADER.finditer(text):
        _add_record(records, number, occurred_at, text[start : header.start()])
        number, occurred_at = int(header.group(1)), header.group(2)
        start = header.end()
    _add_record(records, number, occurred_at, text[start:])
    return records


def _add_record(
    records: list[ErrorRecord], number: int | None, occurred_at: str | None, body: str
) -> None:
    body = body.strip()
    if body:
        records.append(ErrorRecord(number, occurred_at, body))
