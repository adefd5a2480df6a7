"""atune as a service: a FastAPI app that runs experiments in the background.

Run it from this directory (see README.md)::

    ATUNE_SERVICE_CPUS=4 uvicorn app:app --timeout-graceful-shutdown 5

Endpoints:

* ``POST /experiments`` starts an experiment in the background and returns its id and
  status at once. The JSON body names one of the trainables embedded in
  ``trainables.py`` and a few numbers (:class:`ExperimentRequest`); no code is imported
  from a request.
* ``GET /experiments`` and ``GET /experiments/{id}``: the status (``Run.status()``).
* ``GET /experiments/{id}/events``: the events as Server-Sent Events, one JSON object per
  ``data:`` line (``atune.events.encode_event``); from the start of the current run
  (``?from_start=false``: from now on). The stream ends when the run ends.
* ``DELETE /experiments/{id}``: cancels the run (every trial stopped, resources released,
  journal flushed) and answers when it has wound down; the experiment stays resumable.
* ``POST /experiments/{id}/resume``: continues a cancelled (or failed) experiment from its
  directory (``Tuner.restore``).
* ``GET /cluster``: the cluster's CPUs, in all and free. ``GET /health``: liveness.

Each run lives in a task of its own that owns the run's ``async with tuner.start()``
block; the request handlers only look at the handle (:class:`Experiment`). Every
experiment runs on this one event loop, so all of them share the cluster through atune's
one allocator and never oversubscribe it.

Settings (environment variables):

* ``ATUNE_SERVICE_STORAGE``: where experiments are stored (default ``./experiments``).
* ``ATUNE_SERVICE_CPUS``: the CPUs of the Ray instance the service starts (default: all
  of the machine's). With ``RAY_ADDRESS`` set, the service joins that cluster instead
  (then ``trainables.py`` must be importable on its workers).
* ``ATUNE_SERVICE_ACTIVITY_DIR``: an empty directory where trials record that they run
  (see :func:`trainables.quadratic`); off by default.

The service starts Ray (explicit CPUs, no dashboard) before it answers its first request
and shuts it down when it stops, after cancelling the runs still going, which stay
resumable.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anyio
import msgspec
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from trainables import TRAINABLES

import atune as tune
from atune.events import encode_event

__all__ = ["Experiment", "ExperimentRequest", "Service", "Settings", "app", "create_app"]

_log = logging.getLogger("atune.service")
_HERE = Path(__file__).resolve().parent


class ExperimentRequest(BaseModel):
    """The body of ``POST /experiments``: which embedded trainable, and how much of it."""

    model_config = ConfigDict(extra="forbid")

    trainable: Literal["quadratic"] = "quadratic"
    num_samples: int = Field(4, ge=1, le=1000)
    steps: int = Field(20, ge=1, le=100_000)
    step_seconds: float = Field(0.1, ge=0.0, le=60.0)
    max_concurrent_trials: int | None = Field(None, ge=1)


@dataclass(frozen=True)
class Settings:
    """What the service is configured with (see the module docstring)."""

    storage: str
    cpus: int
    activity_dir: str | None

    @classmethod
    def from_env(cls) -> Settings:
        """Read the ``ATUNE_SERVICE_*`` environment variables."""
        return cls(
            storage=os.path.abspath(os.environ.get("ATUNE_SERVICE_STORAGE", "experiments")),
            cpus=int(os.environ.get("ATUNE_SERVICE_CPUS", os.cpu_count() or 1)),
            activity_dir=os.environ.get("ATUNE_SERVICE_ACTIVITY_DIR") or None,
        )


@dataclass
class Experiment:
    """One experiment of the service: its request, and the handle of its current run."""

    id: str
    request: ExperimentRequest
    run: tune.Run
    task: asyncio.Task[None]
    runs: int = 1
    resuming: asyncio.Lock = field(default_factory=asyncio.Lock)

    def describe(self) -> dict[str, Any]:
        """The JSON answer about it: id, request, number of runs, and ``Run.status()``."""
        return {
            "id": self.id,
            "request": self.request.model_dump(),
            "runs": self.runs,
            **msgspec.to_builtins(self.run.status()),
        }


@dataclass
class Service:
    """The experiments, and the tasks that keep their runs going."""

    settings: Settings
    experiments: dict[str, Experiment] = field(default_factory=dict)

    def trainable(self, request: ExperimentRequest) -> Any:
        """The embedded trainable a request names, with the service's parameters."""
        return tune.with_parameters(
            TRAINABLES[request.trainable], activity_dir=self.settings.activity_dir
        )

    def new_tuner(self, experiment_id: str, request: ExperimentRequest) -> tune.Tuner:
        """A tuner for a new experiment (blocking: it creates the experiment directory)."""
        return tune.Tuner(
            self.trainable(request),
            param_space={
                "x": tune.uniform(-5.0, 10.0),
                "steps": request.steps,
                "step_seconds": request.step_seconds,
            },
            tune_config=tune.TuneConfig(
                metric="loss",
                mode="min",
                num_samples=request.num_samples,
                max_concurrent_trials=request.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(
                name=experiment_id, storage_path=self.settings.storage, verbose=0
            ),
        )

    async def launch(self, tuner: tune.Tuner) -> tuple[tune.Run, asyncio.Task[None]]:
        """Start ``tuner``'s run in a task of its own; return once it runs."""
        run = tuner.start()
        started = asyncio.Event()
        task = asyncio.create_task(_keep(run, started), name=f"atune run {run.experiment_path}")
        await started.wait()
        return run, task

    def get(self, experiment_id: str) -> Experiment:
        """The experiment, or a 404."""
        experiment = self.experiments.get(experiment_id)
        if experiment is None:
            raise HTTPException(404, f"no experiment {experiment_id!r}")
        return experiment

    async def close(self) -> None:
        """Cancel every run still going and wait until each has wound down."""
        for experiment in self.experiments.values():
            experiment.run.cancel()
        tasks = [e.task for e in self.experiments.values()]
        if tasks:
            await asyncio.wait(tasks)


async def _keep(run: tune.Run, started: asyncio.Event) -> None:
    """Own the run's block for its whole life; a failure shows in ``Run.status()``."""
    try:
        async with run:
            started.set()
            await run.wait()
    except Exception:
        _log.exception("experiment %s failed", run.experiment_path)
    finally:
        started.set()


def _start_ray(settings: Settings) -> bool:
    """Start Ray, or join ``RAY_ADDRESS``; True when this process connected to Ray.

    Runs before the service answers anything, so it may block. Ray's workers get this
    directory on their path (Ray adds the driver's working directory; a Ray started here
    also inherits ``PYTHONPATH``, which this directory joins) so they import
    ``trainables``.
    """
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        return True
    path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(_HERE), *([path] if path else [])])
    ray.init(
        num_cpus=settings.cpus,
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=False,
    )
    return True


def _cluster_cpus() -> dict[str, float]:
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)  # type: ignore[no-untyped-call]
    free = ray.available_resources().get("CPU", 0.0)  # type: ignore[no-untyped-call]
    return {"cpus": total, "cpus_free": free}


def create_app(settings: Settings | None = None) -> FastAPI:
    """The FastAPI app (settings: from the environment when the app starts)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or Settings.from_env()
        connected = _start_ray(config)
        service = app.state.service = Service(config)
        try:
            yield
        finally:
            await service.close()
            if connected:  # stops the Ray this process started; leaves a joined one running
                import ray

                ray.shutdown()

    app = FastAPI(title="atune service", lifespan=lifespan)

    def service_of(request: Request) -> Service:
        service: Service = request.app.state.service
        return service

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/cluster")
    async def cluster() -> dict[str, float]:
        return await anyio.to_thread.run_sync(_cluster_cpus)

    @app.post("/experiments", status_code=201)
    async def create(body: ExperimentRequest, request: Request) -> dict[str, Any]:
        service = service_of(request)
        experiment_id = uuid.uuid4().hex[:12]
        tuner = await anyio.to_thread.run_sync(service.new_tuner, experiment_id, body)
        run, task = await service.launch(tuner)
        experiment = Experiment(experiment_id, body, run, task)
        service.experiments[experiment_id] = experiment
        return experiment.describe()

    @app.get("/experiments")
    async def list_experiments(request: Request) -> list[dict[str, Any]]:
        return [e.describe() for e in service_of(request).experiments.values()]

    @app.get("/experiments/{experiment_id}")
    async def status(experiment_id: str, request: Request) -> dict[str, Any]:
        return service_of(request).get(experiment_id).describe()

    @app.get("/experiments/{experiment_id}/events")
    async def events(
        experiment_id: str, request: Request, from_start: bool = True
    ) -> StreamingResponse:
        stream = service_of(request).get(experiment_id).run.events(from_start=from_start)

        async def sse() -> AsyncIterator[bytes]:
            async with stream:
                async for event in stream:
                    yield b"data: " + encode_event(event) + b"\n\n"

        return StreamingResponse(
            sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.delete("/experiments/{experiment_id}")
    async def cancel(experiment_id: str, request: Request) -> dict[str, Any]:
        experiment = service_of(request).get(experiment_id)
        experiment.run.cancel()
        # Shielded: a client that hangs up does not cut the wind-down short.
        await asyncio.shield(asyncio.wait([experiment.task]))
        return experiment.describe()

    @app.post("/experiments/{experiment_id}/resume")
    async def resume(experiment_id: str, request: Request) -> dict[str, Any]:
        service = service_of(request)
        experiment = service.get(experiment_id)
        async with experiment.resuming:  # one resume at a time
            if not experiment.task.done():
                raise HTTPException(409, f"experiment {experiment_id!r} is running")
            restore = functools.partial(
                tune.Tuner.restore,
                experiment.run.experiment_path,
                service.trainable(experiment.request),
            )
            tuner = await anyio.to_thread.run_sync(restore)
            experiment.run, experiment.task = await service.launch(tuner)
            experiment.runs += 1
        return experiment.describe()

    return app


app = create_app()
