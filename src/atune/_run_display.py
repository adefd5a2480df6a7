"""``Run.display()``: a run's progress as one notebook output that updates in place.

In a notebook (an IPython kernel, as :func:`atune._progress.in_notebook` tells), the call
makes one output in the cell that called it, with the same content as the notebook
progress display (:mod:`atune._progress`): ``text/html`` (the status line and an HTML
table of the trials) and ``text/plain`` (the same as text, with no escape codes). The
output is then updated in place (``update_display_data``) from the run's events, at most
once a second, and a last time when the run ends, wherever the notebook is by then: the
cell that called ``display()`` returns at once and the run goes on in the background.
Every update is sent as a message of that cell (its request's parent header), so the
frontend updates that cell's output while later cells run.

Outside a notebook (a script, a terminal IPython, a service) there is nothing to update
in place: the call prints the run's status line and trial table once, as plain text, to
stdout. A live terminal display is ``RunConfig(verbose=1)``'s.

The updates are made inline in the controller's task, like every observer of the run
(:class:`atune._run._Sink`): building the snapshot is bounded by the table's rows, and is
done at most once a second. Should the notebook machinery fail, the output stops updating
(a warning says so); the run is never disturbed.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from atune._log import get_logger
from atune._progress import _LIVE_EVERY_S, _NotebookDisplay, in_notebook
from atune._progress_view import View, plain_text

if TYPE_CHECKING:
    from atune._trial import Trial
    from atune.events import Event

__all__ = ["LiveOutput", "print_snapshot"]

_log = get_logger(__name__)


class LiveOutput:
    """One notebook output of a run, shown now and refreshed from the run's events.

    Args:
        view: What to show (the experiment's metric and mode).
        trials: Returns the run's trials now (the controller's live view).
        interval: The least time in seconds between two refreshes driven by events.
    """

    def __init__(
        self,
        view: View,
        trials: Callable[[], Sequence[Trial]],
        interval: float = _LIVE_EVERY_S,
    ) -> None:
        self._display = _NotebookDisplay(view, interval, overwrite=True)
        self._trials = trials
        self._interval = interval
        self._last: float | None = None
        # The calling cell's context: a kernel (ipykernel 7) parents each message to the
        # cell request in its context, so every update belongs to the output's own cell,
        # also those made from the controller's task or its callbacks.
        self._context = contextvars.copy_context()
        self.active = True

    def show(self) -> None:
        """Make the output (in the calling cell) with the run as it is now."""
        self._display.tick(list(self._trials()))

    def on_event(self, event: Event) -> None:
        """Refresh the output, when ``interval`` has passed since the last refresh."""
        if self._last is None or event.ts - self._last >= self._interval:
            self._last = event.ts
            self.refresh()

    def refresh(self) -> None:
        """Update the output in place with the run as it is now."""
        if not self.active:
            return
        try:
            self._context.run(self._display.tick, list(self._trials()))
        except Exception as exc:
            self.active = False
            _log.warning("run.display() stopped updating its output", error=repr(exc))


def print_snapshot(view: View, trials: Sequence[Trial]) -> None:
    """Print the status line and trial table of ``trials`` once, as plain text."""
    sys.stdout.write(plain_text(view.snapshot(list(trials)), []))
    sys.stdout.flush()


def wants_live_output() -> bool:
    """Whether ``Run.display()`` can make an output that updates in place (a notebook)."""
    return in_notebook()
