"""The live jobs and their lifecycle: added, delayed, woken, settled.

The engine (engine.py) turns messages into these transitions; this module
makes them, in one place: a new job is held here and queued (or held back
until its time), or, in a fleet, published for any supervisor to claim; an
outcome settles it (a retry delays it, an end records it and answers its
waiters) or requeues it (the task gave its delivery back: requeues.py); jobs
recovered after a restart or claimed from a fleet's queues are adopted.
Every change goes through ``Steps.save``, which decides what is written when.

What happens is counted here too, per name (``counts``, shown by ``coda
status`` and exported by metrics.py), and each end is told to ``on_end``.
"""

from __future__ import annotations

import logging
import sys
from collections import Counter
from collections.abc import Callable

from ..messages import Failure, Kind, Payload
from .cancel import CANCELLED
from .clock import Clock
from .dispatch import Dispatcher
from .fleet import Fleet
from .jobs import Job, JobState
from .requeues import requeue_delay
from .steps import Steps
from .stores.base import Store
from .waiters import Waiters

__all__ = ["Jobs"]

log = logging.getLogger("coda.engine")


class Jobs:
    """Every unfinished job this supervisor holds (``live``), and what
    happens to each."""

    def __init__(self, store: Store, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.live: dict[str, Job] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.kinds: dict[str, Kind] = {}  # the kind of every name in ``counts``
        # told of every job that ends, with the runtime of its last attempt
        # (None if it never started on a worker): metrics.py's durations
        self.on_end: Callable[[Job, float | None], None] = _ignore
        self.fleet: Fleet | None = None
        self.steps = Steps(store, self.find)
        self.waiters = Waiters(store)
        self.dispatch: Dispatcher  # set by the engine, which builds it on ``live``
        self.cancel: Callable[[Job], None]  # set by the engine (cancel.py)

    def adopt(self, jobs: list[Job]) -> None:
        """Take jobs into this engine: recovered after a restart, or claimed
        from a fleet's queues (a run claimed for the first time is new)."""
        for job in jobs:
            if job.id in self.live:
                continue
            self.store.adopt(job)
            self.live[job.id] = job
            job.worker = None
            if job.kind == "workflow" and job.epoch == 1 and self.fleet is not None:
                self.steps.run_created(job.id)
            self.steps.recovered(job)
            if job.cancelling:  # asked while nobody held it
                job.cancelling = False
                self.cancel(job)
                continue
            if job.state is JobState.DELAYED:
                self.delay(job, job.ready_at)
            else:
                self.dispatch.enqueue(job)
            self.steps.save(job)

    def ended_elsewhere(self, jobs: list[Job]) -> None:
        """Jobs held by other supervisors ended: answer who waits here."""
        for job in jobs:
            if job.state.finished and job.id not in self.live:
                self.waiters.job_ended(job)

    def fenced_off(self, job_ids: set[str]) -> None:
        """Another supervisor reclaimed these jobs: they are no longer ours."""
        for job_id in job_ids:
            job = self.live.pop(job_id, None)
            worker = None if job is None else self.dispatch.workers.get(job.worker or -1)
            if job is not None and worker is not None:
                self.dispatch.release(worker, job)
        log.warning("%d jobs were reclaimed by the fleet from this supervisor", len(job_ids))

    def find(self, job_id: str | None) -> Job | None:
        if job_id is None:
            return None
        return self.live.get(job_id) or self.store.get_job(job_id)

    def new_job(self, job_id: str, kind: Kind, name: str, args: Payload) -> Job:
        return Job(
            id=job_id,
            kind=kind,
            name=sys.intern(name),
            args=_interned(args),
            queue="",
            created_at=self.clock.time(),
        )

    def add(self, job: Job, not_before: float | None = None) -> None:
        delayed = not_before is not None and not_before > self.clock.time()
        if self.fleet is not None:
            if not self.fleet.keeps(job, delayed=delayed):
                self.steps.save(job)  # published: written held by nobody, for any to claim
                return
            self.fleet.hold(job)
        self.live[job.id] = job
        if job.kind == "workflow":
            self.steps.run_created(job.id)
        if delayed:
            assert not_before is not None
            self.delay(job, not_before)  # a countdown / eta: held back, as a retry is
        else:
            self.dispatch.enqueue(job)
        self.steps.save(job)

    def settle(self, job: Job, result: Payload | None, failure: Failure | None) -> None:
        started = job.started_at if job.state is JobState.RUNNING else None
        job.worker = None
        if job.cancelling:  # however it ended, it ends cancelled
            result, failure = None, CANCELLED
        elif failure is not None and failure.retry_in is not None:
            job.attempt += 1
            job.requeues = 0  # a new message: its first requeue comes back at once
            job.failure = failure
            self.count(job.kind, job.name, "retried")
            self.delay(job, self.clock.time() + failure.retry_in)
            self.steps.save(job)
            return
        if job.cancelling:
            job.state = JobState.CANCELLED
        else:
            job.state = JobState.FAILED if failure is not None else JobState.SUCCEEDED
        job.result = result
        job.failure = failure
        job.finished_at = self.clock.time()
        self.steps.save(job)
        del self.live[job.id]
        if job.kind == "workflow":
            self.steps.run_finished(job)
        self.count(job.kind, job.name, _outcome_label(job.state))
        self.waiters.job_ended(job)
        self.on_end(job, None if started is None else job.finished_at - started)

    def requeue(self, job: Job, failure: Failure | None) -> None:
        """The task gave its delivery back: the same arguments run again, marked
        requeued, at once the first time, then after requeues.py's backoff."""
        job.worker = None
        job.requeues += 1
        job.failure = failure
        self.count(job.kind, job.name, "requeued")
        delay = requeue_delay(job.requeues)
        if delay > 0:
            self.delay(job, self.clock.time() + delay)
        else:
            self.dispatch.enqueue(job, front=True)  # where it was, as a broker requeues
        self.steps.save(job)

    def delay(self, job: Job, until: float) -> None:
        job.state = JobState.DELAYED
        job.ready_at = until
        self.clock.call_at(until, lambda: self.wake(job))

    def wake(self, job: Job) -> None:
        if job.state is JobState.DELAYED and self.live.get(job.id) is job:
            self.dispatch.enqueue(job)
            self.steps.save(job)

    def count(self, kind: Kind, name: str, what: str, n: int = 1) -> None:
        counts = self.counts.get(name)
        if counts is None:
            counts = self.counts[name] = Counter()
            self.kinds[name] = kind
        counts[what] += n


def _ignore(job: Job, runtime: float | None) -> None:
    pass


def _outcome_label(state: JobState) -> str:
    """The status counter of a finished job's state."""
    return {JobState.SUCCEEDED: "succeeded", JobState.CANCELLED: "cancelled"}.get(state, "failed")


def _interned(args: Payload) -> Payload:
    """The payload with its content type and encoding shared with every other
    job's: a queued job then costs its body, not three more strings."""
    return Payload(sys.intern(args.content_type), sys.intern(args.content_encoding), args.body)
