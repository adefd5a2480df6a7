"""A scripted backend for driving the real ``Driver`` without a trainable runtime.

Its runners "train" by waiting ``step_s`` seconds on the experiment's clock and reporting
``{"training_iteration": n, "score": x * n}``; a trial returns after ``iterations``
results. Every await point of a runner (and of the backend's ``create_runner``) can be
made to block for good (``block_at``), so a test cancels the driver exactly there.
Nothing here sleeps in real time: under a ``VirtualClock`` a run takes no real time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from atune._controller._clock import Clock, WallClock
from atune._controller._core import ControllerCore, CorePolicy
from atune._controller._driver import Driver
from atune._controller._pool import RunnerPool
from atune._controller._restore import RestorePlan, replay
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
from atune.search import BasicVariantGenerator, grid_search
from atune.storage._journal import read_journal
from atune.storage._layout import JOURNAL_FILE
from atune.storage._writer import ExperimentWriter, create_journal
from atune.trainable._trainable import Trainable

POINTS = ("create_runner", "start", "train", "save", "stop")


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
        self._live = False

    @property
    def released(self) -> bool:
        return self.stopped or self.killed

    def _go_live(self, live: bool) -> None:
        if live != self._live:
            self._live = live
            self.backend.live += 1 if live else -1
            self.backend.max_live = max(self.backend.max_live, self.backend.live)

    async def launch(self, request: LaunchRequest) -> LaunchOutcome:
        if request.mode is not LaunchMode.NEW:
            return LaunchOutcome(declined=True)
        config, info, checkpoint_path = request.config, request.info, request.checkpoint
        self.trial_id = info.trial_id
        self.x = float(config.get("x", 1))
        self.iteration = (
            self.backend.checkpoints[Path(checkpoint_path).name] if checkpoint_path else 0
        )
        self.backend.starts.append((self.backend.clock.monotonic(), info.trial_id))
        self._go_live(True)
        await self.backend.point("start")
        budget = request.budget
        trained = await self.train(budget) if budget is not None else None
        return LaunchOutcome(trained=trained)

    async def train(self, budget: TrainBudget) -> TrainOutcome:
        await self.backend.point("train")
        await self.backend.clock.sleep(self.backend.step_s)
        if self.backend.fail_first > 0:
            self.backend.fail_first -= 1
            error = ErrorInfo(type_name="builtins.RuntimeError", message="flaky", traceback="")
            return TrainOutcome(results=[], error=error)
        self.iteration += 1
        result = {"training_iteration": self.iteration, "score": self.x * self.iteration}
        return TrainOutcome(results=[result], returned=self.iteration >= self.backend.iterations)

    async def save(self, index: int) -> SaveOutcome:
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
        return False if self.trial_id == trial_id else None

    async def kill(self) -> None:
        self._go_live(False)
        self.killed = True


def make_core(
    path: Path,
    *,
    xs: list[int],
    max_live_trials: int = 1,
    is_function: bool = True,
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
    )


def make_driver(
    core: ControllerCore,
    backend: ScriptedBackend,
    path: Path,
    *,
    clock: Clock | None = None,
    resumed: bool = False,
    **kwargs: Any,
) -> Driver:
    """A driver over the scripted backend, with an allocator of its own."""
    if not resumed:
        path.mkdir(parents=True, exist_ok=True)
        create_journal(path)
    scope = Allocator(backend.capacity()).scope()
    return Driver(
        core,
        RunnerPool(backend, scope, reuse=False),
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
