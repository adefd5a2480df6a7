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

from typing import Any

from atune._as_data import ClassTable

__all__ = ["search_from_data", "search_to_data"]

_TABLE = ClassTable(
    "search algorithm",
    {
        "BasicVariantGenerator": "atune.search.basic_variant",
        "ConcurrencyLimiter": "atune.search.concurrency_limiter",
        "Repeater": "atune.search.repeater",
        "OptunaSearch": "atune.search.optuna.optuna_search",
        "HyperOptSearch": "atune.search.hyperopt.hyperopt_search",
    },
    wrapped="searcher",
    args_required=True,
)


def search_to_data(search: Any) -> dict[str, Any] | None:
    """``search`` as ``{"class", "args"}`` data, or None when it cannot be (see above)."""
    return _TABLE.to_data(search)


def search_from_data(data: dict[str, Any]) -> Any:
    """Build the search algorithm that :func:`search_to_data` described.

    Raises:
        StorageError: the record names a class outside atune's table, or its args do not
            fit the class.
    """
    return _TABLE.from_data(data)
