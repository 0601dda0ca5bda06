"""The engine: what runs, and who hears about the result.

A sans-I/O state machine, in h11's spirit. It owns the live state of the
supervisor (every unfinished job, who waits for what, retry timers) and
changes it in response to messages from clients and workers and to the
clock; it sends through ``Peer.send``, reads the time and sets timers
through an injected ``Clock``, and records state through a ``Store``. It
never touches a socket or the event loop, so it runs synchronously, one
message at a time, and unit tests drive it with fake peers and a
``ManualClock``.

Its parts, one concept each: ``Dispatcher`` (dispatch.py) hands ready jobs
to workers and keeps their leases; ``Steps`` (steps.py) is the durable step
(cache keys, rerun history, what is written when); ``Waiters`` (waiters.py)
answers whoever awaits a job once its end is durable.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping

from ..errors import CodaError
from ..messages import (
    Accepted,
    Await,
    CancelRun,
    Error,
    Failure,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from ..protocol import DEFAULT_FRAME_LIMIT
from .admission import Admission
from .blame import judge
from .cancel import CANCELLED, Cancellations
from .clock import Clock
from .dispatch import Dispatcher
from .fleet import Fleet
from .jobs import Job, JobState
from .lifecycle import Jobs
from .peers import NameInfo, Peer, WorkerHandle
from .queries import Queries
from .stores.base import Store

__all__ = ["Engine", "NameInfo", "Peer", "WorkerHandle", "new_id"]

log = logging.getLogger("coda.engine")


def new_id() -> str:
    return os.urandom(16).hex()


class Engine:
    def __init__(
        self,
        store: Store,
        lookup: Callable[[str], NameInfo],
        clock: Clock,
        *,
        accept_content: frozenset[str],
        value_limit: int = DEFAULT_FRAME_LIMIT,
        on_hung_worker: Callable[[int], None] = lambda worker_id: None,
        max_worker_losses: int = 5,
        timeout_grace: float = 2.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self._lookup = lookup
        self.admission = Admission(lookup, accept_content, store, value_limit)
        self._on_hung_worker = on_hung_worker
        self._max_worker_losses = max_worker_losses
        self.jobs = Jobs(store, clock)
        self._live = self.jobs.live
        self.steps = self.jobs.steps
        self.waiters = self.jobs.waiters
        self.counts = self.jobs.counts
        self.fleet: Fleet | None = None
        self._killed_on_purpose: set[int] = set()
        self._draining = False
        self._on_idle: Callable[[], None] | None = None
        self.dispatch = self.jobs.dispatch = Dispatcher(
            lookup,
            self._live,
            clock,
            save=self.steps.save,
            history=self.steps.history,
            on_timeout=self._timed_out,
            on_pause=self._check_idle,
            timeout_grace=timeout_grace,
            on_rate_limited=self._hold_until,
            on_start=lambda job: self.jobs.count(job.kind, job.name, "started"),
        )
        self.cancellations = Cancellations(
            self._live,
            self.dispatch,
            lookup,
            find=self.jobs.find,
            after_commit=store.after_commit,
            finish=lambda job: self.jobs.settle(job, None, CANCELLED),
            replace_worker=self._replace_worker,
        )
        self.jobs.cancel = self.cancellations.cancel
        self.queries = Queries(self._live, store, self.dispatch, self.cancellations.cancel)

    # -- client requests --------------------------------------------------

    def submit(self, peer: Peer, msg: Submit) -> None:
        if self._draining:
            peer.send(
                Error(
                    code="shutting_down",
                    message="the supervisor is shutting down; submit again once it is back",
                    req_id=msg.req_id,
                )
            )
            return
        info = self.admission.check(peer, msg.req_id, msg.name, msg.args, kind=None)
        if info is None:
            return
        job = self.jobs.find(msg.run_id) if msg.run_id else None
        if job is None and self.admission.store_refuses(peer, msg.req_id):
            return
        if job is None:  # a resubmission with the same id is idempotent
            job = self.jobs.new_job(msg.run_id or new_id(), info.kind, msg.name, msg.args)
            job.queue = sys.intern(msg.queue or info.queue)
            self.jobs.add(job, not_before=msg.not_before)

        def acknowledge() -> None:
            peer.send(Accepted(req_id=msg.req_id, run_id=job.id, kind=job.kind))
            if msg.wait:
                self.waiters.add(job, peer, msg.req_id)

        self.store.after_commit(acknowledge)

    def await_run(self, peer: Peer, msg: Await) -> None:
        job = self.jobs.find(msg.run_id)
        if job is None:
            peer.send(
                Error(
                    code="not_found",
                    message=f"no run {msg.run_id!r}: never submitted here, or expired",
                    req_id=msg.req_id,
                )
            )
            return
        self.waiters.add(job, peer, msg.req_id)

    def cancel_run(self, run_id: str, terminate: bool = False) -> str | None:
        """Cancel a run by id (an extension, a schedule): see cancel.py."""
        return self.cancellations.cancel_run(run_id, terminate)

    def cancel(self, peer: Peer, msg: CancelRun) -> None:
        self.cancellations.request(peer, msg)

    # -- worker requests --------------------------------------------------

    def spawn(self, worker: WorkerHandle, msg: Spawn) -> None:
        parent = self._live.get(msg.run_id)
        if parent is None or parent.worker != worker.id or parent.kind != "workflow":
            worker.peer.send(
                Error(
                    code="stale_run",
                    message=f"workflow run {msg.run_id!r} is not running on this worker",
                    req_id=msg.req_id,
                )
            )
            return
        info = self.admission.check(worker.peer, msg.req_id, msg.name, msg.args, kind=msg.kind)
        if info is None:
            return
        step = None if msg.cache_key is None else (msg.name, msg.cache_key)
        job = None if step is None else self.steps.answering(msg.run_id, step, parent.attempt)
        if job is not None:
            self.jobs.count(msg.kind, msg.name, "cache_hits")
        elif self.admission.store_refuses(worker.peer, msg.req_id):
            return
        else:
            job = self.jobs.new_job(new_id(), msg.kind, msg.name, msg.args)
            job.queue = sys.intern(msg.queue or info.queue)
            job.parent_run = msg.run_id
            job.parent_attempt = parent.attempt
            job.cache_key = msg.cache_key
            self.jobs.add(job)
            if step is not None:
                self.steps.record(msg.run_id, step, job)
        self.waiters.add(job, worker.peer, msg.req_id)

    def started(self, worker: WorkerHandle, msg: Started) -> None:
        self.dispatch.started(worker, msg.job_id)

    def task_done(self, worker: WorkerHandle, msg: TaskDone) -> None:
        job = self._live.get(msg.job_id)
        if job is None or job.kind != "task" or not self.dispatch.release(worker, job):
            log.info("ignoring a late result for task %s", msg.job_id)
            return
        if (
            msg.retry_args is not None
            and msg.failure is not None
            and msg.failure.retry_in is not None
        ):
            job.args = msg.retry_args  # the task re-enqueued itself with new arguments
        if msg.requeue and not job.cancelling:
            self.jobs.requeue(job, msg.failure)
        else:
            self.jobs.settle(job, msg.result, msg.failure)

    def workflow_done(self, worker: WorkerHandle, msg: WorkflowDone) -> None:
        job = self._live.get(msg.run_id)
        if job is None or job.attempt != msg.attempt or not self.dispatch.release(worker, job):
            log.info("ignoring a late end of workflow run %s", msg.run_id)
            return
        for name, hits in msg.cache_hits.items():
            self._count_cache_hits(name, hits)
        self.jobs.settle(job, msg.result, msg.failure)

    # -- workers coming and going -----------------------------------------

    def worker_joined(self, worker: WorkerHandle) -> None:
        self.dispatch.join(worker)

    def worker_left(self, worker_id: int) -> None:
        """Requeue, at the head of their queues, the jobs the worker held,
        except those blame.py says must not run again, or that were being
        cancelled."""
        held = self.dispatch.leave(worker_id)
        verdicts = judge(
            held,
            blameless=worker_id in self._killed_on_purpose,
            draining=self._draining,
            max_losses=self._max_worker_losses,
        )
        self._killed_on_purpose.discard(worker_id)
        for job, _ in held:
            job.worker = None
            if job.id in verdicts or job.cancelling:
                self.jobs.settle(job, None, verdicts.get(job.id, CANCELLED))
                continue
            self.dispatch.enqueue(job, front=True)
            self.steps.save(job)

    # -- recovery and housekeeping ----------------------------------------

    def recover(self) -> int:
        """Take back the unfinished jobs of a previous supervisor generation
        (in a fleet, the others reclaim a dead supervisor's: see fleet.py)."""
        if self.fleet is not None:
            return 0
        jobs = list(self.store.unfinished_jobs())
        self.jobs.adopt(jobs)
        return len(jobs)

    # -- in a fleet (see fleet.py) ------------------------------------------

    @property
    def live(self) -> Mapping[str, Job]:
        return self._live

    def adopt(self, jobs: list[Job]) -> None:
        self.jobs.adopt(jobs)

    def ended_elsewhere(self, jobs: list[Job]) -> None:
        self.jobs.ended_elsewhere(jobs)

    def join_fleet(self, fleet: Fleet) -> None:
        self.fleet = self.jobs.fleet = fleet
        self.steps.shared = True
        self.dispatch.on_starved = fleet.want
        self.cancellations.elsewhere = fleet.cancel_elsewhere

    def expire(self, ttl: float, done: Callable[[int], None]) -> None:
        """Forget runs finished more than ``ttl`` seconds ago; the store may
        work in the background and calls ``done(dropped)`` when it is done."""
        self.store.expire_soon(self.clock.time() - ttl, done)

    # -- graceful shutdown (the supervisor drives it) -----------------------

    def drain(self, on_idle: Callable[[], None]) -> None:
        """Take no new work: refuse submits and start no job, then call
        ``on_idle`` once no task is leased to a worker (tasks running now may
        finish and be answered). Spawns are still recorded, queued for the next
        supervisor. Workflows mid-run are not waited for: they stay unfinished
        in the store and are rerun, from their cached steps, after a restart."""
        self._draining = True
        self._on_idle = on_idle
        self.dispatch.paused = True
        self.dispatch.schedule_pump()

    @property
    def draining(self) -> bool:
        return self._draining

    def in_flight(self) -> int:
        """How many tasks are leased to workers right now."""
        return self.dispatch.in_flight()

    def _check_idle(self) -> None:
        if self._on_idle is not None and self.in_flight() == 0:
            on_idle, self._on_idle = self._on_idle, None
            on_idle()

    def live_jobs(self) -> Mapping[str, Job]:
        """Every unfinished job by id (read only: extensions' views)."""
        return self._live

    def status(self) -> dict[str, object]:
        queues = self.dispatch.queued()
        delayed = sum(1 for job in self._live.values() if job.state is JobState.DELAYED)
        return {
            "workers": self.dispatch.worker_status(),
            "queues": {name: dict(counts) for name, counts in sorted(queues.items())},
            "delayed": delayed,
            "runs_in_flight": sum(1 for j in self._live.values() if j.parent_run is None),
            "jobs_in_flight": len(self._live),
            "names": {name: dict(c) for name, c in sorted(self.counts.items())},
            "store": self.store.statistics(),
        }

    # -- internals --------------------------------------------------------

    def _hold_until(self, job: Job, start: float) -> None:
        """A rate-limited task waits for the start the dispatcher gave it."""
        self.jobs.delay(job, start)
        self.steps.save(job)

    def _count_cache_hits(self, name: str, hits: int) -> None:
        """Hits a worker answered from a run's history, for names known here
        only (a worker's report must not grow the counts without bound)."""
        if hits <= 0:
            return
        try:
            kind = self._lookup(name).kind
        except CodaError:
            log.info("ignoring cache hits reported for an unknown name %r", name)
            return
        self.jobs.count(kind, name, "cache_hits", hits)

    def _timed_out(self, job: Job, worker: WorkerHandle) -> None:
        message = f"task {job.name!r} exceeded its timeout"
        self.jobs.settle(job, None, Failure(type_name="coda.TaskTimeout", message=message))
        self._replace_worker(worker.id)

    def _replace_worker(self, worker_id: int) -> None:
        """Have a worker process killed (the pool starts another); the jobs it
        still holds are requeued without blame."""
        self._killed_on_purpose.add(worker_id)
        self._on_hung_worker(worker_id)
