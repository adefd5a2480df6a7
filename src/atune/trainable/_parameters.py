"""``Parameters``: the objects ``with_parameters`` attaches, held so they pickle small.

A wrapped trainable is pickled for every Ray actor that hosts one of its trials, and by
anything else that serialises it (a check at ``Tuner(...)``, a user's own Ray task). The
objects themselves must not travel in those pickles: a 50 MB array would be copied once
per pickle. So the wrapper holds a :class:`Parameters` mapping that pickles as a handle:

* while Ray is initialised in this process, as references into the Ray object store:
  each object is put there once (at the first such pickle, or when the Ray backend
  prepares a ``fit()``), and every later pickle reuses the references. A process that
  unpickles it fetches the objects on first use (numpy arrays are read zero-copy);
* otherwise (no Ray, the in-process backend), as a reference to this very object in
  this process: unpickling in the same process gives the same objects back, without a
  copy. Another process cannot resolve it and says so.

This module imports Ray only when Ray is already imported and initialised.
"""

from __future__ import annotations

import os
import sys
import threading
import uuid
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Parameters"]

# Every live Parameters of this process, by key, for unpickling by reference.
_registry: weakref.WeakValueDictionary[str, Parameters] = weakref.WeakValueDictionary()


def _ray_session() -> Any:
    """An identity of the Ray session this process is connected to, or None."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    return (context.get_job_id(), context.get_node_id())


class Parameters(Mapping[str, Any]):
    """A read-only mapping of ``with_parameters`` objects that pickles as a handle.

    See the module docstring for what a pickle holds. Reading it in a process that got it
    by reference to the object store fetches every object (once) on first access.
    """

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values: dict[str, Any] | None = dict(values or {})
        self._refs: dict[str, Any] | None = None
        self._session: Any = None
        self._lock = threading.Lock()
        self._key = uuid.uuid4().hex
        _registry[self._key] = self

    # ------------------------------------------------------------------ mapping
    def _resolved(self) -> dict[str, Any]:
        values = self._values
        if values is None:
            with self._lock:
                if self._values is None:
                    import ray

                    refs = self._refs or {}
                    fetched = ray.get(list(refs.values()))
                    self._values = dict(zip(refs, fetched, strict=True))
                values = self._values
        return values

    def __getitem__(self, key: str) -> Any:
        return self._resolved()[key]

    def __iter__(self) -> Iterator[str]:
        if self._values is None and self._refs is not None:
            return iter(self._refs)
        return iter(self._resolved())

    def __len__(self) -> int:
        if self._values is None and self._refs is not None:
            return len(self._refs)
        return len(self._resolved())

    def __repr__(self) -> str:
        return f"Parameters({', '.join(self)})"

    # ------------------------------------------------------------- object store
    def to_object_store(self) -> dict[str, Any]:
        """Put every object into the Ray object store, once per Ray session; the refs.

        Blocking (``ray.put`` copies the objects): call it from a worker thread.
        """
        import ray

        session = _ray_session()
        with self._lock:
            if self._refs is None or self._session != session:
                values = self._resolved_unlocked()
                self._refs = {key: ray.put(value) for key, value in values.items()}
                self._session = session
            return self._refs

    def _resolved_unlocked(self) -> dict[str, Any]:
        if self._values is None:  # got by reference: the refs are all there is
            return dict(self._refs or {})
        return self._values

    def fetch(self) -> None:
        """Fetch the objects behind the refs now (in a Ray worker, before the trial runs)."""
        self._resolved()

    # ----------------------------------------------------------------- pickling
    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        if not self:
            return (Parameters, ())
        if self._values is None or _ray_session() is not None:
            refs = self._refs if self._values is None else self.to_object_store()
            return (_from_refs, (refs,))
        return (_from_process, (self._key, os.getpid()))


def _from_refs(refs: dict[str, Any]) -> Parameters:
    parameters = Parameters()
    parameters._values = None
    parameters._refs = dict(refs)
    return parameters


def _from_process(key: str, pid: int) -> Parameters:
    parameters = _registry.get(key)
    if parameters is None:
        raise RuntimeError(
            f"the objects of with_parameters(...) live in the process that made the wrapper "
            f"(pid {pid}), and Ray was not initialised when it was pickled, so they were not "
            f"put into the object store; this process (pid {os.getpid()}) cannot read them. "
            "Initialise Ray (ray.init()) before pickling the trainable for another process."
        )
    return parameters
