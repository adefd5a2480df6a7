"""The read-only list of an experiment's trials that callbacks and schedulers are handed."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import overload

from atune._trial import Trial

__all__ = ["TrialsView"]


class TrialsView(Sequence[Trial]):
    """A read-only view of the core's trials, in creation order (what callbacks get).

    It follows the core's list as trials are created, costs nothing to hand out, and
    offers no way to change the list.
    """

    __slots__ = ("_trials",)

    def __init__(self, trials: list[Trial]) -> None:
        self._trials = trials

    @overload
    def __getitem__(self, index: int) -> Trial: ...
    @overload
    def __getitem__(self, index: slice) -> list[Trial]: ...
    def __getitem__(self, index: int | slice) -> Trial | list[Trial]:
        return self._trials[index]

    def __len__(self) -> int:
        return len(self._trials)

    def __iter__(self) -> Iterator[Trial]:
        return iter(self._trials)

    def __repr__(self) -> str:
        return f"TrialsView({self._trials!r})"
