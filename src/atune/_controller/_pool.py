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

Warm runners (:mod:`atune._controller._warm`): at the normal end of an experiment its
cached runners are kept warm on the event loop instead of stopped, and a later
experiment with the same trainable (and backend session) takes them after its own cache,
before starting a fresh runner, through the same reset as a cached runner.

Pipelining (:mod:`atune._controller._pipelining`): a launch may be queued on the runner
of a trial that is still running (``acquire(after=...)``). It holds that runner
tentatively (several trials may then map to one runner; a runner is let go of only when
no trial holds it any more) and takes it the moment the running trial has ended there;
if the trial it waited for is let go of first, it resets the runner as a plain reuse; if
the runner dies or is killed, the launch falls back to the paths above. Every runner the
pool hands out is a :class:`~atune._controller._pipelining.Sequenced`, which sequences a
queued launch behind the serving trial's calls.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anyio

from atune._controller._pipelining import QueueVerdict, Sequenced, launch_queued
from atune._controller._warm import WarmPlace
from atune._log import get_logger
from atune._trial import Trial
from atune.errors import NotSerializableError, WorkerDiedError
from atune.execution._allocator import Lease, ResourceScope
from atune.execution._backend import Backend
from atune.execution._protocol import (
    ErrorInfo,
    LaunchMode,
    LaunchOutcome,
    LaunchRequest,
    Runner,
    TrainBudget,
    TrainOutcome,
)
from atune.trainable._session import TrialInfo

__all__ = ["RunnerPool", "StartFailed"]

_log = get_logger(__name__)


class StartFailed(Exception):
    """The trainable could not be constructed or restored (user code raised).

    Attributes:
        error: What was raised.
        restore_failed: It was raised restoring the checkpoint.
        checkpoint_corrupt: The checkpoint itself is damaged (see ``LaunchOutcome``).
    """

    def __init__(
        self, error: ErrorInfo, *, restore_failed: bool = False, checkpoint_corrupt: bool = False
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.restore_failed = restore_failed
        self.checkpoint_corrupt = checkpoint_corrupt

    @classmethod
    def of(cls, outcome: LaunchOutcome) -> StartFailed:
        """The failure a launch outcome with an ``error`` reports."""
        assert outcome.error is not None
        return cls(
            outcome.error,
            restore_failed=outcome.restore_failed,
            checkpoint_corrupt=outcome.checkpoint_corrupt,
        )


class RunnerPool:
    """Owns every runner of one experiment (see the module docstring).

    Args:
        backend: Where runners are created.
        scope: The experiment's share of the allocator.
        reuse: Whether runners are cached for reuse.
        warm: Where runners kept warm between experiments are taken from and left at
            the end (:mod:`atune._controller._warm`); None keeps none.
    """

    def __init__(
        self,
        backend: Backend,
        scope: ResourceScope,
        *,
        reuse: bool,
        warm: WarmPlace | None = None,
    ) -> None:
        self.backend = backend
        self.scope = scope
        self.reuse = reuse
        self.warm = warm
        self._runners: dict[str, tuple[Sequenced, Lease]] = {}
        self._cache: list[tuple[Sequenced, Lease]] = []
        self._launching: dict[str, anyio.Event] = {}  # trials whose runner is being found
        self._waiting = 0

    def runner(self, trial_id: str) -> Runner:
        """The runner serving ``trial_id``."""
        return self._runners[trial_id][0]

    async def acquire(
        self,
        trial: Trial,
        info: TrialInfo,
        checkpoint: str | None,
        budget: TrainBudget,
        after: str | None = None,
        in_place: bool = False,
    ) -> tuple[bool, TrainOutcome | None]:
        """Start a runner for ``trial`` (reused from the cache, or new) and train it.

        With ``after``, the launch is first queued on that trial's runner (pipelining):
        it takes the runner the moment that trial's function has returned, with no
        round trip in between; if that trial is still going, it falls back to the rest.

        With ``in_place`` the trial holds a runner already (a scheduler's exploit
        relaunches it): with reuse on, that runner is reset for it (``reset_config``, then
        the restore); without reuse, or when the reset is declined or raises, the runner
        is let go of and the launch takes the usual way.

        Returns:
            Whether the runner was reused, and the first train outcome.

        Raises:
            InfeasibleResourcesError: The request can never fit.
            StartFailed: The trainable's constructor (``setup``) or restore raised.
            WorkerDiedError: The new worker died while starting.
        """
        request = LaunchRequest(LaunchMode.NEW, trial.config, info, checkpoint, budget)
        if in_place:
            relaunched = await self._relaunch(trial, request)
            if relaunched is not None:
                return True, relaunched.trained
        if after is not None:
            taken, trained = await self._launch_after(trial, after, request)
            if taken:
                return True, trained
        self._launching[trial.trial_id] = anyio.Event()
        try:
            return await self._acquire(trial, request)
        finally:
            self._launching.pop(trial.trial_id).set()

    async def _acquire(
        self, trial: Trial, request: LaunchRequest
    ) -> tuple[bool, TrainOutcome | None]:
        resources = trial.resources
        if self.reuse:
            entry = self._take_cached(resources) or await self._take_warm(resources)
            if entry is not None:
                reused = await self._reset(trial, entry, request)
                if reused is not None:
                    return reused
        await self._evict_cache()
        self._waiting += 1
        try:
            lease = await self.scope.acquire(resources)
        finally:
            self._waiting -= 1
        try:
            runner = Sequenced(await self.backend.create_runner(resources))
        except BaseException:
            lease.release()
            raise
        started = await self._launch(trial.trial_id, (runner, lease), request)
        if started.error is not None:
            self._runners.pop(trial.trial_id, None)
            await self._discard(runner, lease)
            raise StartFailed.of(started)
        return False, started.trained

    async def _reset(
        self, trial: Trial, entry: tuple[Sequenced, Lease], request: LaunchRequest
    ) -> tuple[bool, TrainOutcome | None] | None:
        """Reset an idle runner for ``trial``; None when it did not take (discarded then).

        Raises:
            StartFailed: The checkpoint could not be restored (the runner is discarded).
        """
        try:
            outcome = await self._launch(trial.trial_id, entry, request.queued_as(LaunchMode.REUSE))
        except WorkerDiedError as exc:  # it died while idle in the cache
            _log.info(
                "cached actor died; starting a fresh one",
                trial_id=trial.trial_id,
                reason=str(exc),
            )
            return None
        if not outcome.declined and outcome.error is None:
            return True, outcome.trained
        why = (
            "reset_config() returned False"
            if outcome.declined
            else f"resetting raised {outcome.error.type_name}: {outcome.error.message}"  # type: ignore[union-attr]
        )
        self._runners.pop(trial.trial_id, None)
        await self._discard(*entry)
        if outcome.restore_failed:  # the checkpoint's fault, not the runner's
            raise StartFailed.of(outcome)
        _log.info("not reusing actor; starting a fresh one", trial_id=trial.trial_id, reason=why)
        return None

    async def _take_warm(self, resources: Any) -> tuple[Sequenced, Lease] | None:
        """A runner an earlier experiment left warm (its lease adopted into our scope)."""
        warm = self.warm
        if warm is None:
            return None
        taken = warm.cache.take(warm.key, resources)
        if taken is None:
            return None
        runner, lease = taken
        try:
            await self.scope.adopt(lease)  # waits for a slot of max_concurrent_trials
        except BaseException:
            if not warm.cache.park(warm.key, runner, lease, warm.idle_timeout_s):
                with anyio.CancelScope(shield=True):
                    await self._discard(Sequenced(runner), lease)
            raise
        _log.debug("reusing a runner kept warm by an earlier experiment")
        return Sequenced(runner), lease

    async def _relaunch(self, trial: Trial, request: LaunchRequest) -> LaunchOutcome | None:
        """Launch ``trial`` again on the runner it holds (see ``acquire(in_place=True)``);
        None when it did not take (the runner is let go of then)."""
        entry = self._runners.get(trial.trial_id)
        if entry is None:
            return None
        if not self.reuse:
            del self._runners[trial.trial_id]
            await self._stop(*entry)
            return None
        try:
            outcome = await self._launch(trial.trial_id, entry, request.queued_as(LaunchMode.REUSE))
        except WorkerDiedError:  # unregistered and discarded already
            return None
        if not outcome.declined and outcome.error is None:
            return outcome
        self._runners.pop(trial.trial_id, None)
        await self._discard(*entry)
        if outcome.restore_failed:  # the checkpoint's fault, not the runner's
            raise StartFailed.of(outcome)
        return None

    async def _launch_after(
        self, trial: Trial, after: str, request: LaunchRequest
    ) -> tuple[bool, TrainOutcome | None]:
        """Queue ``trial``'s launch on ``after``'s runner; whether it took the runner.

        The trial holds the runner tentatively while its launch waits in the runner's
        queue, so that a later launch can queue behind it in turn. The runner's guard
        (``LaunchMode.QUEUED``) makes a queued launch safe: it never touches a trial that is
        still going.
        """
        launching = self._launching.get(after)
        if launching is not None:
            await launching.wait()  # its runner is being started or reset right now
        entry = self._runners.get(after)
        if entry is None:  # the trial let go of its runner already: take the usual way
            return False, None
        runner, lease = entry
        me = trial.trial_id
        self._runners[me] = entry  # held tentatively, so a later launch can queue behind
        info = request.info
        if info.trial_dir:
            # Made now, while the trial it waits for still runs, rather than by the runner
            # between the two trials: creating a directory can take half a millisecond.
            await anyio.to_thread.run_sync(_make_dir, info.trial_dir)
        try:
            verdict, outcome = await launch_queued(
                runner, request, others_hold=lambda: self._held(entry, besides=me)
            )
        except NotSerializableError:  # never sent: the runner serves its trial on
            del self._runners[me]
            raise
        if verdict is QueueVerdict.TAKEN:
            assert outcome is not None
            return True, outcome.trained
        if verdict is QueueVerdict.FREE:
            # The trial it waited for was let go of while still going there (stopped at a
            # report, e.g. by a scheduler): resetting the runner is safe now.
            try:
                outcome = await self._launch(me, entry, request.queued_as(LaunchMode.REUSE))
            except WorkerDiedError:  # it was killed (its trial failed): go the usual way
                return False, None
            if not (outcome.declined or outcome.error):
                return True, outcome.trained
        if self._runners.get(me) is entry:
            del self._runners[me]
        if not self._held(entry):
            await self._discard(runner, lease)
        return False, None

    def _held(self, entry: tuple[Sequenced, Lease], besides: str | None = None) -> bool:
        """Whether a trial (other than ``besides``) holds the runner of ``entry``."""
        return any(other is entry for tid, other in self._runners.items() if tid != besides)

    async def _launch(
        self, trial_id: str, entry: tuple[Sequenced, Lease], request: LaunchRequest
    ) -> LaunchOutcome:
        """Launch ``request`` on ``entry``'s runner, registered while it runs.

        The runner is registered first, so an abandoned launch (time budget) can still be
        drained and killed by the driver; any other failure unregisters and kills it.
        """
        self._runners[trial_id] = entry
        launching = self._launching.get(trial_id)
        if launching is not None:
            launching.set()  # a launch queued behind this trial may now use the runner
        try:
            return await entry[0].launch(request)
        except anyio.get_cancelled_exc_class():
            raise  # left registered: the driver drains and kills it
        except BaseException:
            self._runners.pop(trial_id, None)
            await self._discard(*entry)
            raise

    async def release(self, trial_id: str, *, kill: bool) -> tuple[Any, str]:
        """Let go of the trial's runner: kill it, cache it for reuse, or stop it.

        Returns:
            The action taken (``"killed"``, ``"cached"``, ``"stopped"``) and a reason.
        """
        entry = self._runners.pop(trial_id, None)
        if entry is None:
            return "killed", "runner already gone"
        runner, lease = entry
        if not kill and self._held(entry):
            runner.mark_turn()  # the launch queued on it may reset it now
            return "cached", "handed over to the trial queued on it"
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
        """The normal end of ``fit()``: keep cached runners warm, or stop them; stop the rest.

        With reuse and a warm place, each cached runner is kept warm for a later
        experiment (its lease leaves this experiment's scope) unless the warm cache
        declines it (timeout 0, a request waiting for resources).
        """
        cached, leftover = self._cache, list(self._runners.values())
        self._runners.clear()
        self._cache = []
        for runner, lease in leftover:
            await self._stop(runner, lease)
        for runner, lease in cached:
            if not self._park(runner, lease):
                await self._stop(runner, lease)

    def _park(self, runner: Sequenced, lease: Lease) -> bool:
        """Hand an idle runner to the warm cache; whether it took it."""
        warm = self.warm
        if warm is None or not self.reuse or runner.killed or lease.released:
            return False
        self.scope.detach(lease)  # if not kept, releasing it frees the pool only
        return warm.cache.park(warm.key, runner.runner, lease, warm.idle_timeout_s)

    # ------------------------------------------------------------------ helpers
    def _take_cached(self, request: Any) -> tuple[Sequenced, Lease] | None:
        for i, (runner, _lease) in enumerate(self._cache):
            if runner.resources == request:
                return self._cache.pop(i)
        return None

    async def _evict_cache(self) -> None:
        while self._cache:
            runner, lease = self._cache.pop()
            await self._stop(runner, lease)

    async def _stop(self, runner: Sequenced, lease: Lease) -> ErrorInfo | None:
        try:
            return await runner.stop()
        except Exception as exc:
            _log.warning("runner did not stop cleanly", error=repr(exc))
            return None
        finally:
            lease.release()

    async def _discard(self, runner: Sequenced, lease: Lease) -> None:
        try:
            await runner.kill()
        finally:
            lease.release()


def _make_dir(path: str) -> None:
    """Create ``path`` if it can be; the runner makes it too, and reports a failure."""
    with contextlib.suppress(OSError):
        os.makedirs(path, exist_ok=True)
