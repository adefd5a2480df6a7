"""PBT's policy log (``log_config``): the files Ray Tune writes, and reading them back.

Each exploit appends one JSON line (a list, Ray Tune's format) to
``<experiment>/pbt_global.txt`` and to ``<experiment>/pbt_policy_<trial_id>.txt``::

    [trial_tag, donor_tag, trial_iteration, donor_iteration, donor_config, new_config]

``trial_tag``/``donor_tag`` are the trials' original experiment tags; ``donor_iteration``
is the ``training_iteration`` of the donor checkpoint the trial continues from (Ray Tune
writes the donor's last result's, which may be later than its checkpoint). A trial's
policy file starts as a copy of its donor's (its lineage) and then gets its own line, so
the file of any trial describes the config schedule that produced it.
:func:`load_policy` turns such a file back into that schedule, for
:class:`~atune.schedulers.PopulationBasedTrainingReplay`.

The lines are kept in the scheduler's state (JSON data, journaled); :func:`write_policy_files`
writes them. It does file I/O, so the driver calls it off the event loop.
"""

from __future__ import annotations

import json
import os
from typing import Any

__all__ = ["load_policy", "policy_line", "write_policy_files"]

GLOBAL_FILE = "pbt_global.txt"


def policy_file_name(trial_id: str, prefix: str = "pbt") -> str:
    """``pbt_policy_<trial_id>.txt``."""
    return f"{prefix}_policy_{trial_id}.txt"


def policy_line(
    trial_tag: str,
    donor_tag: str,
    trial_iteration: Any,
    donor_iteration: Any,
    donor_config: dict[str, Any],
    new_config: dict[str, Any],
) -> str:
    """One policy line, JSON (values that are not JSON data are written as ``str``)."""
    row = [trial_tag, donor_tag, trial_iteration, donor_iteration, donor_config, new_config]
    return json.dumps(row, default=str)


def _write(path: str, lines: list[str]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)
    os.replace(tmp, path)


def write_policy_files(
    experiment_path: str,
    global_lines: list[str],
    policies: dict[str, list[str]],
    *,
    prefix: str = "pbt",
) -> None:
    """(Re)write ``<prefix>_global.txt`` and each trial's ``<prefix>_policy_<id>.txt``.

    Each file is replaced atomically with all its lines, so writing is idempotent (a
    restored run writes the same files). Blocking: call it off the event loop.
    """
    os.makedirs(experiment_path, exist_ok=True)
    _write(os.path.join(experiment_path, f"{prefix}_global.txt"), global_lines)
    for trial_id, lines in policies.items():
        _write(os.path.join(experiment_path, policy_file_name(trial_id, prefix)), lines)


def load_policy(policy_file: str) -> tuple[dict[str, Any] | None, list[tuple[int, dict[str, Any]]]]:
    """Read a policy file into ``(initial_config, [(iteration, config), ...])``.

    The lines are read from the last back while each line's trial tag is the next line's
    donor tag (the lineage of the file's trial); an earlier line that does not chain was
    overwritten by a later exploit and is ignored. The initial config is the donor config
    of the first line of the chain (None for an empty file).

    Raises:
        ValueError: a line is not a JSON list of six items; the message names the file
            and the line number.
    """
    rows: list[list[Any]] = []
    with open(policy_file, encoding="utf-8") as f:
        for number, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(
                    f"Could not read PBT policy file {policy_file!r}: line {number} is not "
                    f"JSON ({exc})"
                ) from None
            if not isinstance(row, list) or len(row) != 6:
                raise ValueError(
                    f"Could not read PBT policy file {policy_file!r}: line {number} is not "
                    f"a list of six items: {text.strip()[:200]!r}"
                )
            rows.append(row)
    schedule: list[tuple[int, dict[str, Any]]] = []
    chained_tag: str | None = None
    initial: dict[str, Any] | None = None
    for trial_tag, donor_tag, _, donor_iteration, donor_config, new_config in reversed(rows):
        if chained_tag is not None and trial_tag != chained_tag:
            break
        chained_tag = donor_tag
        initial = donor_config
        schedule.append((int(donor_iteration), new_config))
    return initial, list(reversed(schedule))
