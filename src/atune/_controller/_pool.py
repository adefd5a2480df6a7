"""``RunnerPool``: runners, their resource leases, and the cache of actors kept for reuse.

A runner is created only after the experiment's resource scope granted a lease for the
trial's request, and the lease is released when the runner is stopped or killed, on every
path: success, error, cancellation.

Actor reuse: a trial that ends normally leaves its runner in a cache (with its lease) when
reuse is on and no launch is waiting for resources; the next trial with an *equal*
resource request takes it and ``reset``\\ s it instead of starting a new one. When the
reset is declined (``reset_config`` returns False) or raises, the runner is discarded and
a fresh one is started, so the trial still runs (Ray Tune fails the trial instead).
Cached runners with other requests are stopped before a launch waits for resources, so
the cache never starves a launch.
"""

from __future__ import annotations

from typing import Any

import structlog

from atune._trial import Trial
from atune.execution._allocator import Lease, ResourceScope
from atune.execution._backend import Backend, Runner
from atune.execution._host import ErrorInfo
from atune.trainable._session import TrialInfo

__all__ = ["RunnerPool", "StartFailed"]

_log = structlog.get_logger(__name__)


class StartFailed(Exception):
    """The trainable could not be constructed or restored (user code raised)."""

    def __init__(self, error: ErrorInfo) -> None:
        super().__init__(error.message)
        self.error = error


class RunnerPool:
    """Owns every runner of one experiment (see the module docstring).

    Args:
        backend: Where runners are created.
        scope: The experiment's share of the allocator.
        reuse: Whether runners are cached for reuse.
    """

    def __init__(self, backend: Backend, scope: ResourceScope, *, reuse: bool) -> None:
        self.backend = backend
        self.scope = scope
        self.reuse = reuse
        self._runners: dict[str, tuple[Runner, Lease]] = {}
        self._cache: list[tuple[Runner, Lease]] = []
        self._waiting = 0
        self.num_started = 0
        self.num_reused = 0

    def runner(self, trial_id: str) -> Runner:
        """The runner serving ``trial_id``."""
        return self._runners[trial_id][0]

    async def acquire(
        self, trial: Trial, info: TrialInfo, checkpoint: str | None
    ) -> tuple[Runner, bool]:
        """A started runner for ``trial``: reused from the cache, or new.

        Returns:
            The runner and whether it was reused.

        Raises:
            InfeasibleResourcesError: The request can never fit.
            StartFailed: The trainable's constructor (``setup``) or restore raised.
            WorkerDiedError: The new worker died while starting.
        """
        log = _log.bind(trial_id=trial.trial_id)
        request = trial.resources
        if self.reuse:
            entry = self._take_cached(request)
            if entry is not None:
                runner, lease = entry
                outcome = await runner.reset(trial.config, info, checkpoint)
                if outcome is True:
                    self._runners[trial.trial_id] = entry
                    self.num_reused += 1
                    return runner, True
                why = "reset_config() returned False" if outcome is False else (
                    f"reset_config() raised {outcome.type_name}: {outcome.message}"  # type: ignore[union-attr]
                )
                log.info("not reusing actor; starting a fresh one", reason=why)
                await self._discard(runner, lease)
        await self._evict_cache()
        self._waiting += 1
        try:
            lease = await self.scope.acquire(request)
        finally:
            self._waiting -= 1
        runner = None
        try:
            runner = await self.backend.create_runner(request)
            error = await runner.start(trial.config, info, checkpoint)
        except BaseException:
            await self._discard(runner, lease)
            raise
        if error is not None:
            await self._discard(runner, lease)
            raise StartFailed(error)
        self._runners[trial.trial_id] = (runner, lease)
        self.num_started += 1
        return runner, False

    async def release(self, trial_id: str, *, kill: bool) -> tuple[Any, str]:
        """Let go of the trial's runner: kill it, cache it for reuse, or stop it.

        Returns:
            The action taken (``"killed"``, ``"cached"``, ``"stopped"``) and a reason.
        """
        entry = self._runners.pop(trial_id, None)
        if entry is None:
            return "killed", "runner already gone"
        runner, lease = entry
        if kill:
            await self._discard(runner, lease)
            return "killed", "after a failure"
        if self.reuse and self._waiting == 0:
            self._cache.append(entry)
            return "cached", ""
        error = await self._stop(runner, lease)
        return "stopped", "" if error is None else f"cleanup raised: {error.message}"

    async def kill_all(self) -> None:
        """Kill every runner and release every lease (cancellation path)."""
        entries = list(self._runners.values()) + self._cache
        self._runners.clear()
        self._cache.clear()
        for runner, lease in entries:
            await self._discard(runner, lease)

    async def stop_all(self) -> None:
        """Stop cached runners and any left over (the normal end of ``fit()``)."""
        entries = list(self._runners.values()) + self._cache
        self._runners.clear()
        self._cache.clear()
        for runner, lease in entries:
            await self._stop(runner, lease)

    # ------------------------------------------------------------------ helpers
    def _take_cached(self, request: Any) -> tuple[Runner, Lease] | None:
        for i, (runner, _lease) in enumerate(self._cache):
            if runner.resources == request:
                return self._cache.pop(i)
        return None

    async def _evict_cache(self) -> None:
        while self._cache:
            runner, lease = self._cache.pop()
            await self._stop(runner, lease)

    async def _stop(self, runner: Runner, lease: Lease) -> ErrorInfo | None:
        try:
            return await runner.stop()
        except Exception as exc:
            _log.warning("runner did not stop cleanly", error=repr(exc))
            return None
        finally:
            lease.release()

    async def _discard(self, runner: Runner | None, lease: Lease) -> None:
        try:
            if runner is not None:
                await runner.kill()
        finally:
            lease.release()
