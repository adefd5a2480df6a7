"""Naming and claiming an experiment's directory ``<storage_path>/<name>``.

``Tuner(...)`` claims the directory of a new experiment, as Ray Tune's ``Tuner`` creates
it: from then on ``Tuner.can_restore(path)`` is true and no other experiment can write
there. Claiming is atomic: the directory is created with an exclusive ``mkdir``, so of
two experiments started at the same moment under the same name (two threads, two
processes, two ``await fit()`` on one loop) exactly one gets ``<name>``; the other gets
``<name>_2`` (then ``_3``, ...) and a warning says so. An existing directory, even an
empty one, is never reused for a new experiment: ``Tuner.restore`` continues an old one.

Default names keep Ray Tune's ``<trainable>_<YYYY-MM-DD_HH-MM-SS>`` shape and add the
microseconds, so experiments started in the same second get different names rather than
suffixes.

Errors name the path: a ``storage_path`` that cannot be created or written is a
:class:`~atune.errors.StorageError`; a name longer than the file system allows is a
:class:`~atune.errors.ConfigError`, checked before anything is created.
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
from pathlib import Path

from atune._log import get_logger
from atune.errors import ConfigError, StorageError

__all__ = ["check_name_length", "claim_experiment_dir", "default_experiment_name"]

_log = get_logger(__name__)
# Suffixes tried after the name itself is taken; far more than two experiments racing
# for one name ever need.
_MAX_SUFFIX = 10_000


def default_experiment_name(trainable_name: str, now: _dt.datetime | None = None) -> str:
    """``<trainable>_<YYYY-MM-DD_HH-MM-SS>_<microseconds>``: Ray Tune's name, made unique."""
    now = now or _dt.datetime.now()
    return f"{trainable_name}_{now.strftime('%Y-%m-%d_%H-%M-%S_%f')}"


def _name_max(directory: Path) -> int:
    """The longest file name (in bytes) the file system at ``directory`` allows."""
    probe = directory
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent  # the storage path may not exist yet: ask its nearest ancestor
    try:
        return int(os.pathconf(probe, "PC_NAME_MAX"))
    except (OSError, ValueError):
        return 255


def check_name_length(storage_path: str | os.PathLike[str], name: str) -> None:
    """Refuse an experiment name the file system under ``storage_path`` cannot hold.

    Raises:
        ConfigError: ``name`` is longer than the file system's name limit; the message
            names the name, its length and the limit.
    """
    limit = _name_max(Path(storage_path))
    length = len(os.fsencode(name))
    if length > limit:
        raise ConfigError(
            f"the experiment name {name!r} is {length} bytes long, but the file system of "
            f"{os.fspath(storage_path)!r} allows at most {limit}; choose a shorter "
            "RunConfig.name",
            value=name,
        )


def claim_experiment_dir(storage_path: str | os.PathLike[str], name: str) -> Path:
    """Create ``<storage_path>/<name>`` (or the first free ``<name>_N``) exclusively.

    Blocking: call it from ``Tuner(...)`` or a worker thread. ``storage_path`` is created
    with its parents when missing.

    Returns:
        The directory created, which no other caller of this function can also get.

    Raises:
        ConfigError: The name (with its suffix) is longer than the file system allows.
        StorageError: ``storage_path`` cannot be created or written (permissions, not a
            directory, read-only or full file system); the message names the path.
    """
    root = Path(storage_path)
    check_name_length(root, name)
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _storage_error(f"cannot create the storage path {str(root)!r}", exc) from exc
    for n in range(1, _MAX_SUFFIX + 1):
        path = root / (name if n == 1 else f"{name}_{n}")
        try:
            os.mkdir(path)
        except FileExistsError:
            continue
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise ConfigError(
                    f"the experiment directory {str(path)!r} is longer than the file system "
                    "allows; choose a shorter RunConfig.name or storage_path",
                    value=name,
                ) from exc
            raise _storage_error(
                f"cannot create the experiment directory {str(path)!r}", exc
            ) from exc
        if n > 1:
            _log.warning(
                "experiment directory already in use; writing the new experiment next to it "
                "(use Tuner.restore to continue the old one)",
                existing=str(root / name),
                new=str(path),
            )
        return path
    raise StorageError(
        f"{str(root / name)!r} and {_MAX_SUFFIX - 1} suffixed variants of it all exist; "
        "choose another RunConfig.name"
    )


def _storage_error(what: str, exc: OSError) -> StorageError:
    reason = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0)
    return StorageError(f"{what}: {reason}" + (f" ({code})" if code else ""))
