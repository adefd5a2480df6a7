"""atune's own objects (search algorithms, schedulers) as data, for ``experiment.json``.

``Tuner.restore`` rebuilds them without a pickle: an object is recorded as
``{"class": <name>, "args": {...}}`` (its ``init_args()``, JSON data), and on restore the
class is looked up *by name in a fixed table*, never imported from a path the file names,
and built from the args. Wrappers record the wrapped object's record in their args. An
object outside the table, or whose arguments are not data, is not recorded (``None``).
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from atune.errors import StorageError

__all__ = ["ClassTable"]


class ClassTable:
    """The classes of one kind that ``experiment.json`` may name, and how to (re)build them.

    Args:
        what: What they are, for error messages ("scheduler", "search algorithm").
        classes: Class name -> module. Only these are ever built.
        wrapped: The ``init_args`` key that holds a wrapped object of the same table.
        args_required: An object without ``init_args()`` is not recorded (else: no args).
            An object whose ``init_args()`` returns None is never recorded.
        build_errors: Exceptions of the constructor that mean "these args do not fit".
    """

    def __init__(
        self,
        what: str,
        classes: dict[str, str],
        *,
        wrapped: str | None = None,
        args_required: bool = False,
        build_errors: tuple[type[Exception], ...] = (TypeError,),
    ) -> None:
        self.what = what
        self.classes = classes
        self.wrapped = wrapped
        self.args_required = args_required
        self.build_errors = build_errors

    def to_data(self, obj: Any) -> dict[str, Any] | None:
        """``obj`` as ``{"class", "args"}`` data, or None when it cannot be."""
        name = type(obj).__name__
        if self.classes.get(name) != type(obj).__module__:
            return None
        init_args = getattr(obj, "init_args", None)
        args = init_args() if callable(init_args) else None
        if args is None:
            # No ``init_args()``: no args (unless required). ``init_args()`` answering None
            # says its args are not data (code, objects): not recorded.
            if self.args_required or callable(init_args):
                return None
            args = {}
        args = dict(args)
        if self.wrapped is not None and self.wrapped in args:
            inner = self.to_data(args[self.wrapped])
            if inner is None:
                return None
            args[self.wrapped] = inner
        try:
            json.dumps(args, allow_nan=False)
        except (TypeError, ValueError):
            return None
        return {"class": name, "args": args}

    def from_data(self, data: dict[str, Any]) -> Any:
        """Build the object that :meth:`to_data` described.

        Raises:
            StorageError: the record names a class outside the table, or its args do not
                fit the class.
        """
        try:
            name, args = data["class"], dict(data["args"])
            module = self.classes[name]
        except (KeyError, TypeError) as exc:
            raise StorageError(f"experiment.json: not a restorable {self.what}: {data!r}") from exc
        if self.wrapped is not None and self.wrapped in args:
            args[self.wrapped] = self.from_data(args[self.wrapped])
        cls = getattr(importlib.import_module(module), name)
        build = getattr(cls, "from_init_args", cls)
        try:
            return build(**args)
        except self.build_errors as exc:
            raise StorageError(
                f"experiment.json: cannot rebuild {name} from {args!r}: {exc}"
            ) from exc
