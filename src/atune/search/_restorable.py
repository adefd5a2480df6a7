"""Search algorithms as data, so that ``Tuner.restore`` can rebuild them without a pickle.

``experiment.json`` records the experiment's search algorithm as
``{"class": <name>, "args": {...}}`` when it is one of atune's own classes and its
``init_args()`` can express its constructor arguments as JSON data (wrappers hold the
wrapped searcher's record in their args). On restore the class is looked up *by name in
the table below*, never imported from a path the file names, and built from the args;
its progress then comes back from the journal's last ``SearcherStateSaved`` snapshot.

A searcher outside the table (a user's own class), or one whose arguments are code (a
define-by-run function, a sampler object), is not recorded: restore warns that it is not
restored and continues with random search, as before.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from atune.errors import StorageError

__all__ = ["search_from_data", "search_to_data"]

# Class name -> module. Only these are ever built from experiment.json.
_CLASSES = {
    "BasicVariantGenerator": "atune.search.basic_variant",
    "ConcurrencyLimiter": "atune.search.concurrency_limiter",
    "Repeater": "atune.search.repeater",
    "OptunaSearch": "atune.search.optuna.optuna_search",
}
_WRAPPED = "searcher"


def search_to_data(search: Any) -> dict[str, Any] | None:
    """``search`` as ``{"class", "args"}`` data, or None when it cannot be (see above)."""
    name = type(search).__name__
    if _CLASSES.get(name) != type(search).__module__:
        return None
    init_args = getattr(search, "init_args", None)
    args = init_args() if callable(init_args) else None
    if args is None:
        return None
    args = dict(args)
    if _WRAPPED in args:
        inner = search_to_data(args[_WRAPPED])
        if inner is None:
            return None
        args[_WRAPPED] = inner
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError):
        return None
    return {"class": name, "args": args}


def search_from_data(data: dict[str, Any]) -> Any:
    """Build the search algorithm that :func:`search_to_data` described.

    Raises:
        StorageError: the record names a class outside atune's table, or its args do not
            fit the class.
    """
    try:
        name, args = data["class"], dict(data["args"])
        module = _CLASSES[name]
    except (KeyError, TypeError) as exc:
        raise StorageError(f"experiment.json: not a restorable search algorithm: {data!r}") from exc
    if _WRAPPED in args:
        args[_WRAPPED] = search_from_data(args[_WRAPPED])
    cls = getattr(importlib.import_module(module), name)
    build = getattr(cls, "from_init_args", cls)
    try:
        return build(**args)
    except TypeError as exc:
        raise StorageError(f"experiment.json: cannot rebuild {name} from {args!r}: {exc}") from exc
