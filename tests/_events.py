"""A callback that records every event of a run, in order, for tests to inspect."""

from __future__ import annotations

import atune as tune
from atune.events import Event


class EventLog(tune.Callback):
    """Keeps every event the experiment emits (``Callback.on_event``)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def on_event(self, event: Event) -> None:
        self.events.append(event)
