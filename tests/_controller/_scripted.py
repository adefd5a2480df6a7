"""A scripted backend for driving the real ``Driver`` without a trainable runtime.

Its runners "train" by waiting ``step_s`` seconds on the experiment's clock and reporting
``{"training_iteration": n, "score": x * n}``; a trial returns after ``iterations``
results. Every await point of a runner (and of the backend's ``create_runner``) can be
made to block for good (``block_at``), so a test cancels the driver exactly there.
Nothing here sleeps in real time: under a ``VirtualClock`` a run takes no real time.

As a real runner, a scripted runner runs its calls one at a time in the order they were
submitted (its call queue), and a call is submitted when its coroutine starts. Each call
can be scripted, as httpx's ``MockTransport`` does with requests: ``scripts`` maps a call
(``"new"``, ``"reuse"``, ``"queued"`` for the launch modes, ``"train"``, ``"save"``) to a
handler ``(runner, argument) -> outcome or None``; an outcome answers the call, None lets
the runner answer as usual, and a handler may raise (``WorkerDiedError``: the runner
died). By default a ``REUSE`` launch resets the runner and a ``QUEUED`` one takes it only
once the trial it serves has returned (otherwise ``busy``), as the trainable host does.
``backend.log`` records each call as it is submitted (``"<call>"``) and as it returns
(``"<call> returned"``), with the trial it is for, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from atune._controller._clock import Clock, WallClock
from atune._controller._core import ControllerCore, CorePolicy
from atune._controller._driver import Driver
from atune._controller._pool import RunnerPool
from atune._controller._restore import RestorePlan, replay
from atune.errors import WorkerDiedError
from atune.events import Event
from atune.execution._allocator import Allocator
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
from atune.schedulers import TrialScheduler
from atune.search import BasicVariantGenerator, grid_search
from atune.storage._journal import read_journal
from atune.storage._layout import JOURNAL_FILE
from atune.storage._writer import ExperimentWriter, create_journal
from atune.trainable._trainable import Trainable

POINTS = ("create_runner", "start", "train", "save", "stop")

#: A scripted answer to one call: an outcome, or None for the runner's usual answer.
Script = Callable[["ScriptedRunner", Any], Any]


class ScriptedBackend(Backend):
    """Creates :class:`ScriptedRunner`\\ s; see the module docstring.

    Args:
        clock: The clock runners wait on (the driver's).
        capacity: What :meth:`capacity` reports; change ``self.capacity_now`` to grow or
            shrink the cluster (``dynamic_capacity`` is on).
        step_s: Seconds one ``train`` takes.
        iterations: Results a trial reports before its function returns.
        fail_first: Train calls (over all trials) that fail before any succeeds.
        block_at: An await point (one of ``POINTS``) where the ``block_on``-th call
            blocks for good.
        scripts: Handlers for calls (see the module docstring).
    """

    dynamic_capacity = True

    def __init__(
        self,
        clock: Clock,
        *,
        capacity: dict[str, float] | None = None,
        step_s: float = 10.0,
        iterations: int = 3,
        fail_first: int = 0,
        block_at: str | None = None,
        block_on: int = 1,
        scripts: dict[str, Script] | None = None,
    ) -> None:
        assert block_at is None or block_at in POINTS, block_at
        self.clock = clock
        self.capacity_now = dict(capacity or {"CPU": 1.0})
        self.step_s = step_s
        self.iterations = iterations
        self.fail_first = fail_first
        self.block_at = block_at
        self.block_on = block_on
        self.calls: dict[str, int] = {}
        self.blocked = anyio.Event()
        self.runners: list[ScriptedRunner] = []
        self.live = 0
        self.max_live = 0
        self.starts: list[tuple[float, str]] = []  # (clock.monotonic(), trial_id)
        self.checkpoints: dict[str, int] = {}  # dir name -> training_iteration saved
        self.scripts = dict(scripts or {})
        self.log: list[tuple[str, str]] = []  # (call, trial id), see the module docstring

    def calls_of(self, call: str) -> list[str]:
        """The trials ``call`` was submitted for, in order (e.g. ``"queued"``)."""
        return [trial_id for name, trial_id in self.log if name == call]

    async def point(self, name: str) -> None:
        """An await point: a checkpoint, or blocking for good where the script says."""
        self.calls[name] = self.calls.get(name, 0) + 1
        if name == self.block_at and self.calls[name] == self.block_on:
            self.blocked.set()
            await anyio.sleep_forever()
        await anyio.lowlevel.checkpoint()

    async def setup(self) -> None:
        return None

    def capacity(self) -> dict[str, float]:
        return dict(self.capacity_now)

    async def prepare(self, trainable_cls: type[Trainable]) -> None:
        return None

    async def create_runner(self, resources: PlacementGroupFactory) -> Runner:
        await self.point("create_runner")  # cancelled here: no runner exists yet
        runner = ScriptedRunner(self, resources)
        self.runners.append(runner)
        return runner


class ScriptedRunner:
    """One trial's runner of a :class:`ScriptedBackend`."""

    def __init__(self, backend: ScriptedBackend, resources: PlacementGroupFactory) -> None:
        self.backend = backend
        self.resources = resources
        self.iteration = 0
        self.x = 1.0
        self.trial_id = ""
        self.stopped = False
        self.killed = False
        self.ended = False  # the trial it serves has returned
        self.reused = False  # the trial it serves reset it (not a fresh start)
        self._live = False
        self._last_call = anyio.Event()  # the last call submitted returned
        self._last_call.set()
        self._queued: set[anyio.CancelScope] = set()

    @property
    def released(self) -> bool:
        return self.stopped or self.killed

    def _go_live(self, live: bool) -> None:
        if live != self._live:
            self._live = live
            self.backend.live += 1 if live else -1
            self.backend.max_live = max(self.backend.max_live, self.backend.live)

    async def _in_turn(self, call: str, trial_id: str) -> anyio.Event:
        """Submit a call: log it and wait for the calls submitted before it to return."""
        self.backend.log.append((call, trial_id))
        before, self._last_call = self._last_call, anyio.Event()
        mine = self._last_call
        with anyio.CancelScope() as waiting:  # a kill fails the calls still queued
            self._queued.add(waiting)
            try:
                await before.wait()
            finally:
                self._queued.discard(waiting)
        if self.killed:
            mine.set()
            raise WorkerDiedError("the scripted runner was killed")
        return mine

    def _returned(self, mine: anyio.Event, call: str, trial_id: str) -> None:
        self.backend.log.append((f"{call} returned", trial_id))
        mine.set()

    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        call, trial_id = request.mode.value, request.info.trial_id
        mine = await self._in_turn(call, trial_id)
        try:
            return await self._launch(call, request)
        finally:
            self._returned(mine, call, trial_id)

    async def _launch(self, call: str, request: LaunchRequest) -> LaunchOutcome:
        if self.killed:
            raise WorkerDiedError("the scripted runner was killed")
        if request.mode is LaunchMode.QUEUED and not self.ended:
            return LaunchOutcome(busy=True)
        script = self.backend.scripts.get(call)
        if script is not None and (scripted := script(self, request)) is not None:
            return scripted  # type: ignore[no-any-return]
        config, info, checkpoint_path = request.config, request.info, request.checkpoint
        self.trial_id = info.trial_id
        self.reused = request.mode.reuses
        self.ended = False
        self.x = float(config.get("x", 1))
        self.iteration = (
            self.backend.checkpoints[Path(checkpoint_path).name] if checkpoint_path else 0
        )
        self.backend.starts.append((self.backend.clock.monotonic(), info.trial_id))
        self._go_live(True)
        await self.backend.point("start")
        budget = request.budget
        trained = await self._train(budget) if budget is not None else None
        return LaunchOutcome(trained=trained)

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        trial_id = self.trial_id
        mine = await self._in_turn("train", trial_id)
        try:
            return await self._train(budget)
        finally:
            self._returned(mine, "train", trial_id)

    async def _train(self, budget: TrainBudget) -> TrainOutcome:
        if self.killed:
            raise WorkerDiedError("the scripted runner was killed")
        script = self.backend.scripts.get("train")
        if script is not None and (scripted := script(self, budget)) is not None:
            return scripted  # type: ignore[no-any-return]
        await self.backend.point("train")
        await self.backend.clock.sleep(self.backend.step_s)
        if self.backend.fail_first > 0:
            self.backend.fail_first -= 1
            error = ErrorInfo(type_name="builtins.RuntimeError", message="flaky", traceback="")
            return TrainOutcome(results=[], error=error)
        self.iteration += 1
        result = {"training_iteration": self.iteration, "score": self.x * self.iteration}
        self.ended = self.iteration >= self.backend.iterations
        return TrainOutcome(results=[result], returned=self.ended)

    async def save(self, index: int) -> SaveOutcome:
        trial_id = self.trial_id
        mine = await self._in_turn("save", trial_id)
        try:
            return await self._save(index)
        finally:
            self._returned(mine, "save", trial_id)

    async def _save(self, index: int) -> SaveOutcome:
        if self.killed:
            raise WorkerDiedError("the scripted runner was killed")
        script = self.backend.scripts.get("save")
        if script is not None and (scripted := script(self, index)) is not None:
            return scripted  # type: ignore[no-any-return]
        await self.backend.point("save")
        dir_name = f"checkpoint_{index:06d}"
        self.backend.checkpoints[dir_name] = self.iteration
        return SaveOutcome(dir_name=dir_name, training_iteration=self.iteration)

    async def stop(self) -> ErrorInfo | None:
        self._go_live(False)
        self.stopped = True
        await self.backend.point("stop")
        return None

    async def drain(self) -> list[dict[str, Any]]:
        return []

    async def wait_started(self, trial_id: str, timeout: float) -> bool | None:
        if self.trial_id != trial_id:  # not (yet) started here: ask again after ``timeout``
            await self.backend.clock.sleep(timeout)
        return self.reused if self.trial_id == trial_id else None

    async def kill(self) -> None:
        self._go_live(False)
        self.killed = True
        for waiting in self._queued:
            waiting.cancel()


def make_core(
    path: Path,
    *,
    xs: list[int],
    max_live_trials: int = 1,
    is_function: bool = True,
    scheduler: TrialScheduler | None = None,
    **policy: Any,
) -> ControllerCore:
    """A core over a grid of ``x`` values, one CPU per trial."""
    search = BasicVariantGenerator(random_state=0)
    search.set_search_properties(None, None, {"x": grid_search(xs)}, 1)
    return ControllerCore(
        CorePolicy(
            experiment_path=str(path),
            trainable_name="scripted",
            is_function=is_function,
            resources_for=lambda config: PlacementGroupFactory([{"CPU": 1}]),
            max_live_trials=max_live_trials,
            **policy,
        ),
        search,
        scheduler=scheduler,
    )


def make_driver(
    core: ControllerCore,
    backend: ScriptedBackend,
    path: Path,
    *,
    clock: Clock | None = None,
    resumed: bool = False,
    reuse: bool = False,
    **kwargs: Any,
) -> Driver:
    """A driver over the scripted backend, with an allocator of its own."""
    if not resumed:
        path.mkdir(parents=True, exist_ok=True)
        create_journal(path)
    scope = Allocator(backend.capacity()).scope()
    return Driver(
        core,
        RunnerPool(backend, scope, reuse=reuse),
        ExperimentWriter(str(path)),
        experiment_name=path.name,
        resumed=resumed,
        clock=clock or WallClock(),
        **kwargs,
    )


def journal(path: Path) -> list[Event]:
    """The events in the experiment's journal."""
    return read_journal(path / JOURNAL_FILE).events


def restored_core(path: Path, **kwargs: Any) -> ControllerCore:
    """A new core rebuilt from the journal, as ``Tuner.restore`` does."""
    core = make_core(path, **kwargs)
    replay(core, RestorePlan(experiment_path=path, uid="00000", events=journal(path)))
    return core
