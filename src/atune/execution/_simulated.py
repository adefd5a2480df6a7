"""The simulated backend: runners that answer from learning curves on a virtual clock.

Behind the same :class:`~atune.execution._protocol.Runner` seam as the in-process and Ray
runners, a :class:`SimulatedRunner` computes nothing: it looks each iteration up in its
:class:`~atune.simulator.Simulator`'s curves and waits that iteration's seconds on the
driver's clock (a :class:`~atune._controller._clock.VirtualClock`), so a study of hours
runs in (milli)seconds through the real core and driver.

It keeps the protocol's rules as the real runners do: calls run one at a time in the
order they were submitted (a call is submitted when its coroutine starts), a ``QUEUED``
launch takes the runner only once the trial it serves has ended there, results carry the
fields a ``Trainable`` fills in (with virtual time and a fixed host), a train call honours
its :class:`~atune.execution._protocol.TrainBudget` (count, virtual seconds, a dict
stopper's criteria, checkpoint frequency; not ``max_bytes``), and user failures (a curve
that raises or has no entry) come back as :class:`~atune.execution._protocol.ErrorInfo`.

A checkpoint is a directory with one small JSON file (the iteration and the time it was
taken at), written in a worker thread through the clock's ``run_sync`` (virtual time
stands still meanwhile); restoring reads it back, so a paused or exploited trial, or one
resumed by ``Tuner.restore``, continues its curve from there.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from atune._controller._clock import Clock
from atune._flatten import flatten_dict
from atune.errors import WorkerDiedError
from atune.execution._backend import Backend
from atune.execution._protocol import (
    ErrorInfo,
    LaunchMode,
    LaunchOutcome,
    LaunchRequest,
    Runner,
    SaveOutcome,
    TrainBudget,
    TrainOutcome,
)
from atune.execution.placement_groups import PlacementGroupFactory
from atune.storage._layout import checkpoint_name
from atune.trainable._trainable import Trainable

if TYPE_CHECKING:
    from atune.simulator import Simulator

__all__ = ["SimulatedBackend", "SimulatedRunner"]

#: The file in a simulated checkpoint directory.
CHECKPOINT_FILE = "simulated_checkpoint.json"
_HOSTNAME = "simulator"
T = TypeVar("T")
_NODE_IP = "127.0.0.1"


class SimulatedBackend(Backend):
    """Creates :class:`SimulatedRunner`\\ s for one simulated ``fit()``.

    Args:
        simulator: The curves and settings.
        clock: The driver's clock (virtual), which runners wait on.
    """

    def __init__(self, simulator: Simulator, clock: Clock) -> None:
        self.simulator = simulator
        self.clock = clock
        # Checkpoints this run wrote: path -> state (read from disk when not here).
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self._writes: list[_Write] = []  # checkpoints waiting for the next thread call
        self._writing = False  # a thread call is writing checkpoints now
        self._date: tuple[float, str] = (math.nan, "")  # the last result's time and date

    async def write_checkpoint(self, path: str, state: dict[str, Any]) -> None:
        """Write one checkpoint in a worker thread, with any others due meanwhile.

        Trials that end together save together: the first save's call writes its
        checkpoint in a worker thread, and the saves that arrive while that thread runs
        are written by one more call after it, and so on (a group commit), rather than by
        one worker-thread round trip each. The clock stands still while a thread runs, so
        when each save returns (its deadline, see :meth:`SimulatedRunner._in_thread`) does
        not depend on which call wrote it. The waits are shielded, as a thread call is:
        a save that began ends with its checkpoint written (or its error).

        Raises:
            OSError: this checkpoint could not be written.
        """
        write = _Write(path, state)
        self._writes.append(write)
        with anyio.CancelScope(shield=True):
            if self._writing:
                await write.done.wait()
            else:
                self._writing = True
                batch: list[_Write] = []
                try:
                    while self._writes:
                        batch, self._writes = self._writes, []
                        errors = await self.clock.run_sync(_write_checkpoints, batch)
                        for done, error in zip(batch, errors, strict=True):
                            done.error = error
                            done.done.set()
                finally:
                    self._writing = False
                    # Only if the thread call itself failed: nobody is left waiting.
                    for left in (*batch, *self._writes):
                        if not left.done.is_set():
                            left.error = OSError("the simulated checkpoint was not written")
                            left.done.set()
                    self._writes = []
        if write.error is not None:
            raise write.error

    def date(self, now: float) -> str:
        """``now`` as a result's ``date`` (the last one is kept: trials report together)."""
        if self._date[0] != now:
            self._date = (
                now,
                _dt.datetime.fromtimestamp(now, _dt.timezone.utc).strftime("%Y-%m-%d_%H-%M-%S"),
            )
        return self._date[1]

    async def setup(self) -> None:
        return None

    def capacity(self) -> dict[str, float]:
        return {"CPU": float(self.simulator.workers)}

    async def prepare(self, trainable_cls: type[Trainable]) -> None:
        return None

    async def create_runner(self, resources: PlacementGroupFactory) -> Runner:
        return SimulatedRunner(self, resources)


class SimulatedRunner:
    """One trial's simulated runner; see the module docstring."""

    def __init__(self, backend: SimulatedBackend, resources: PlacementGroupFactory) -> None:
        self.backend = backend
        self.resources = resources
        self.trial_id = ""
        self.reused = False
        self.killed = False
        self._config: dict[str, Any] = {}
        self._trial_dir = ""
        self._iteration = 0
        self._time_total = 0.0
        self._since_restore = 0
        self._time_since_restore = 0.0
        # The next iteration's row, looked up ahead (to mark the last result done).
        self._next: tuple[int, tuple[dict[str, Any], float] | None] | None = None
        self._ended = False  # the trial it serves reported its last result here
        self._current: list[dict[str, Any]] = []  # results of the train call in progress
        # asyncio's Event rather than anyio's (a simulation is asyncio-only, see
        # VirtualClock): one is made per call, and anyio's costs several times more.
        self._last_call = asyncio.Event()
        self._last_call.set()
        self._queued: set[anyio.CancelScope] = set()

    # ------------------------------------------------------------ call sequencing
    async def _in_turn(self) -> asyncio.Event:
        """Submit a call: wait until the calls submitted before it have returned."""
        before, self._last_call = self._last_call, asyncio.Event()
        mine = self._last_call
        if before.is_set() and not self.killed:  # nothing ahead of it: no wait
            return mine
        with anyio.CancelScope() as waiting:  # a kill fails the calls still queued
            self._queued.add(waiting)
            try:
                await before.wait()
            finally:
                self._queued.discard(waiting)
        if self.killed:
            mine.set()
            raise WorkerDiedError("the simulated runner was killed")
        return mine

    # ------------------------------------------------------------------- calls
    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """Start (or reset to) the request's trial, restore, and train within the budget."""
        mine = await self._in_turn()
        try:
            if request.mode is LaunchMode.QUEUED and not self._ended:
                return LaunchOutcome(busy=True)
            self.trial_id = request.info.trial_id
            self.reused = request.mode.reuses
            self._config = request.config
            self._trial_dir = request.info.trial_dir or ""
            self._ended = False
            self._iteration, self._time_total = 0, 0.0
            self._since_restore, self._time_since_restore = 0, 0.0
            self._next = None
            clock = self.backend.clock
            if self.backend.simulator.launch_s:
                await clock.sleep(self.backend.simulator.launch_s)
            if request.checkpoint is not None:
                try:
                    state = await self._read_checkpoint(request.checkpoint)
                except (OSError, ValueError, KeyError) as exc:
                    return LaunchOutcome(
                        error=ErrorInfo.from_exception(exc),
                        restore_failed=True,
                        checkpoint_corrupt=True,
                    )
                self._iteration = int(state["training_iteration"])
                self._time_total = float(state["time_total_s"])
            trained = await self._train(request.budget) if request.budget is not None else None
            return LaunchOutcome(trained=trained)
        finally:
            mine.set()

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        """Report the next iterations of the curve, waiting their seconds each."""
        mine = await self._in_turn()
        try:
            return await self._train(budget)
        finally:
            mine.set()

    async def _train(self, budget: TrainBudget) -> TrainOutcome:
        clock = self.backend.clock
        started = clock.monotonic()
        results: list[dict[str, Any]] = []
        self._current = results
        while True:
            try:
                row = self._take_row()
            except Exception as exc:  # the curve raised or has no entry: a user error
                return TrainOutcome(results=results, error=ErrorInfo.from_exception(exc))
            if row is None:  # ended without a result marked done (nothing left to report)
                self._ended = True
                return TrainOutcome(results=results, returned=True)
            metrics, seconds = row
            await clock.sleep(seconds)
            result = self._autofill(metrics, seconds, self._is_last())
            results.append(result)
            if result["done"]:
                self._ended = True
                return TrainOutcome(results=results)
            if self._batch_ends(result, len(results), budget, clock.monotonic() - started):
                return TrainOutcome(results=results)

    def _take_row(self) -> tuple[dict[str, Any], float] | None:
        """The row of the next iteration (``self._iteration + 1``)."""
        iteration = self._iteration + 1
        peeked, self._next = self._next, None
        if peeked is not None and peeked[0] == iteration:
            return peeked[1]
        return self._lookup(iteration)

    def _is_last(self) -> bool:
        """Whether the row being reported is its curve's last (the next one is looked up
        now and kept, so each row is looked up once). A curve that raises for the next
        iteration raises again when that iteration is due, and fails the trial then."""
        iteration = self._iteration + 2
        try:
            row = self._lookup(iteration)
        except Exception:
            return False
        self._next = (iteration, row)
        return row is None

    def _lookup(self, iteration: int) -> tuple[dict[str, Any], float] | None:
        return self.backend.simulator.row(self._config, iteration)

    def _autofill(self, metrics: dict[str, Any], seconds: float, last: bool) -> dict[str, Any]:
        """The result as ``Trainable.train`` fills it in, with virtual time and host."""
        self._iteration += 1
        self._since_restore += 1
        self._time_total += seconds
        self._time_since_restore += seconds
        now = self.backend.clock.time()
        result = dict(metrics)
        result.setdefault("done", last)
        result.setdefault("training_iteration", self._iteration)
        result.setdefault("timestamp", int(now))
        result.update(
            trial_id=self.trial_id,
            date=self.backend.date(now),
            time_this_iter_s=seconds,
            time_total_s=self._time_total,
            pid=0,
            hostname=_HOSTNAME,
            node_ip=_NODE_IP,
            config=self._config,
            time_since_restore=self._time_since_restore,
            iterations_since_restore=self._since_restore,
        )
        return result

    @staticmethod
    def _batch_ends(
        result: dict[str, Any], count: int, budget: TrainBudget, elapsed: float
    ) -> bool:
        if count >= budget.max_results or result.get("should_checkpoint"):
            return True
        if budget.checkpoint_frequency and (
            result["training_iteration"] % budget.checkpoint_frequency == 0
        ):
            return True
        if budget.stop_criteria:
            flat = flatten_dict(result)
            for key, threshold in budget.stop_criteria.items():
                value = flat.get(key)
                if isinstance(value, (int, float)) and value >= threshold:
                    return True
        return bool(budget.max_seconds) and elapsed >= budget.max_seconds

    async def save(self, index: int) -> SaveOutcome:
        """Write checkpoint number ``index``: the iteration and time reached."""
        mine = await self._in_turn()
        try:
            dir_name = checkpoint_name(index)
            path = os.path.join(self._trial_dir, dir_name)
            state = {"training_iteration": self._iteration, "time_total_s": self._time_total}
            try:
                with self.backend.clock.move_on_after(self.backend.simulator.save_s):
                    # Returns at that deadline, not when the write is done: see _in_thread.
                    await self.backend.write_checkpoint(path, state)
                    await anyio.sleep_forever()
            except OSError as exc:
                return SaveOutcome(error=ErrorInfo.from_exception(exc))
            self.backend.checkpoints[path] = state
            return SaveOutcome(dir_name=dir_name, training_iteration=self._iteration)
        finally:
            mine.set()

    async def _read_checkpoint(self, path: str) -> dict[str, Any]:
        state = self.backend.checkpoints.get(path)
        if state is None:
            state = await self._in_thread(0.0, _read_checkpoint, path)
        return state

    async def _in_thread(self, seconds: float, func: Callable[..., T], *args: Any) -> T:
        """Run blocking ``func`` in a worker thread; return ``seconds`` after the call.

        The wake-up is set on the clock *before* the thread starts, so the call returns
        at a deterministic point: when the clock fires that deadline, in the order of
        deadlines set (a virtual clock stands still while the thread runs, and fires a
        deadline of "now" only once every task waits). Returning right when the thread
        ends would order trials' saves by which thread happened to finish first.
        """
        result: T
        with self.backend.clock.move_on_after(seconds):
            result = await self.backend.clock.run_sync(func, *args)
            await anyio.sleep_forever()
        return result

    async def stop(self) -> ErrorInfo | None:
        """Release the runner (nothing to clean up)."""
        mine = await self._in_turn()
        mine.set()
        return None

    async def drain(self) -> list[dict[str, Any]]:
        """The results of the train call in progress so far."""
        return list(self._current)

    async def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        """Whether the launch in progress reused the runner, once ``trial_id`` is set up."""
        if self.trial_id != trial_id:
            await self.backend.clock.sleep(timeout)
        return self.reused if self.trial_id == trial_id else None

    async def kill(self) -> None:
        """Tear down at once: calls still queued fail with ``WorkerDiedError``."""
        self.killed = True
        for waiting in list(self._queued):
            waiting.cancel()


class _Write:
    """A checkpoint to write (see :meth:`SimulatedBackend.write_checkpoint`)."""

    __slots__ = ("done", "error", "path", "state")

    def __init__(self, path: str, state: dict[str, Any]) -> None:
        self.path = path
        self.state = state
        self.done = asyncio.Event()
        self.error: OSError | None = None


def _write_checkpoints(writes: list[_Write]) -> list[OSError | None]:
    """Write each checkpoint; what each write raised (None: written)."""
    errors: list[OSError | None] = []
    for write in writes:
        try:
            _write_checkpoint(write.path, write.state)
        except OSError as exc:
            errors.append(exc)
        else:
            errors.append(None)
    return errors


def _write_checkpoint(path: str, state: dict[str, Any]) -> None:
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{CHECKPOINT_FILE}.tmp"
    tmp.write_text(json.dumps(state))
    os.replace(tmp, directory / CHECKPOINT_FILE)


def _read_checkpoint(path: str) -> dict[str, Any]:
    state = json.loads((Path(path) / CHECKPOINT_FILE).read_text())
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a simulated checkpoint")
    return {
        "training_iteration": int(state["training_iteration"]),
        "time_total_s": float(state["time_total_s"]),
    }
