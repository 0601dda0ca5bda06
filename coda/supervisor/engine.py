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
from collections import Counter
from collections.abc import Callable, Mapping

from ..messages import (
    Accepted,
    Await,
    CancelReply,
    CancelRun,
    Error,
    Failure,
    Kind,
    Payload,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from .admission import Admission
from .blame import judge
from .cancel import CANCELLED, Cancellations
from .clock import Clock
from .dispatch import Dispatcher, NameInfo, Peer, WorkerHandle
from .jobs import Job, JobState
from .queries import Queries
from .steps import Steps
from .stores.base import Store
from .waiters import Waiters

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
        on_hung_worker: Callable[[int], None] = lambda worker_id: None,
        max_worker_losses: int = 5,
        timeout_grace: float = 2.0,
    ) -> None:
        self.store = store
        self.clock = clock
        self._lookup = lookup
        self.admission = Admission(lookup, accept_content, store)
        self._on_hung_worker = on_hung_worker
        self._max_worker_losses = max_worker_losses
        self._live: dict[str, Job] = {}
        self._killed_on_purpose: set[int] = set()
        self._draining = False
        self._on_idle: Callable[[], None] | None = None
        self.counts: dict[str, Counter[str]] = {}
        self.steps = Steps(store, self._find)
        self.waiters = Waiters(store)
        self.dispatch = Dispatcher(
            lookup,
            self._live,
            clock,
            save=self.steps.save,
            history=self.steps.history,
            on_timeout=self._timed_out,
            on_pause=self._check_idle,
            timeout_grace=timeout_grace,
            on_rate_limited=self._hold_until,
        )
        self.cancellations = Cancellations(
            self._live,
            self.dispatch,
            lookup,
            finish=lambda job: self._settle(job, None, CANCELLED),
            replace_worker=self._replace_worker,
        )
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
        job = self._find(msg.run_id) if msg.run_id else None
        if job is None and self.admission.store_refuses(peer, msg.req_id):
            return
        if job is None:  # a resubmission with the same id is idempotent
            job = self._new_job(msg.run_id or new_id(), info.kind, msg.name, msg.args)
            job.queue = sys.intern(msg.queue or info.queue)
            self._add(job, not_before=msg.not_before)

        def acknowledge() -> None:
            peer.send(Accepted(req_id=msg.req_id, run_id=job.id, kind=job.kind))
            if msg.wait:
                self.waiters.add(job, peer, msg.req_id)

        self.store.after_commit(acknowledge)

    def await_run(self, peer: Peer, msg: Await) -> None:
        job = self._find(msg.run_id)
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
        """Cancel a run by id (not through a client: an extension, a schedule);
        its state after the request, or None if it is unknown or has ended."""
        job = self._find(run_id)
        if job is None or job.state.finished:
            return None
        self.cancellations.cancel(job, terminate)
        return "cancelled" if job.state.finished else "cancelling"

    def cancel(self, peer: Peer, msg: CancelRun) -> None:
        job = self._find(msg.run_id)
        if job is None or job.state.finished:
            code, what = (
                ("not_found", "never submitted here, or expired")
                if job is None
                else ("already_finished", f"it has already {job.state.value}; nothing was changed")
            )
            peer.send(
                Error(
                    code=code,
                    message=f"cannot cancel run {msg.run_id!r}: {what}",
                    req_id=msg.req_id,
                )
            )
            return
        self.cancellations.cancel(job, msg.terminate)
        state = "cancelled" if job.state.finished else "cancelling"
        reply = CancelReply(req_id=msg.req_id, run_id=job.id, state=state)
        self.store.after_commit(lambda: peer.send(reply))

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
            self._count(msg.name, "cache_hits")
        elif self.admission.store_refuses(worker.peer, msg.req_id):
            return
        else:
            job = self._new_job(new_id(), msg.kind, msg.name, msg.args)
            job.queue = sys.intern(msg.queue or info.queue)
            job.parent_run = msg.run_id
            job.parent_attempt = parent.attempt
            job.cache_key = msg.cache_key
            self._add(job)
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
        self._settle(job, msg.result, msg.failure)

    def workflow_done(self, worker: WorkerHandle, msg: WorkflowDone) -> None:
        job = self._live.get(msg.run_id)
        if job is None or job.attempt != msg.attempt or not self.dispatch.release(worker, job):
            log.info("ignoring a late end of workflow run %s", msg.run_id)
            return
        for name, hits in msg.cache_hits.items():
            self._count(name, "cache_hits", hits)
        self._settle(job, msg.result, msg.failure)

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
                self._settle(job, None, verdicts.get(job.id, CANCELLED))
                continue
            self.dispatch.enqueue(job, front=True)
            self.steps.save(job)

    # -- recovery and housekeeping ----------------------------------------

    def recover(self) -> int:
        """Take back the unfinished jobs of a previous supervisor generation."""
        count = 0
        for job in self.store.unfinished_jobs():
            self._live[job.id] = job
            self.steps.recovered(job)
            job.worker = None
            if job.state is JobState.DELAYED:
                self._delay(job, job.ready_at)
            else:
                self.dispatch.enqueue(job)
            self.steps.save(job)
            count += 1
        return count

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

    def _find(self, job_id: str | None) -> Job | None:
        if job_id is None:
            return None
        return self._live.get(job_id) or self.store.get_job(job_id)

    def _new_job(self, job_id: str, kind: Kind, name: str, args: Payload) -> Job:
        return Job(
            id=job_id,
            kind=kind,
            name=sys.intern(name),
            args=_interned(args),
            queue="",
            created_at=self.clock.time(),
        )

    def _add(self, job: Job, not_before: float | None = None) -> None:
        self._live[job.id] = job
        if job.kind == "workflow":
            self.steps.run_created(job.id)
        if not_before is not None and not_before > self.clock.time():
            self._delay(job, not_before)  # a countdown / eta: held back, as a retry is
        else:
            self.dispatch.enqueue(job)
        self.steps.save(job)

    def _settle(self, job: Job, result: Payload | None, failure: Failure | None) -> None:
        job.worker = None
        if job.cancelling:  # however it ended, it ends cancelled
            result, failure = None, CANCELLED
        elif failure is not None and failure.retry_in is not None:
            job.attempt += 1
            job.failure = failure
            self._count(job.name, "retried")
            self._delay(job, self.clock.time() + failure.retry_in)
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
        del self._live[job.id]
        if job.kind == "workflow":
            self.steps.run_finished(job)
        self._count(job.name, _outcome_label(job.state))
        self.waiters.job_ended(job)

    def _delay(self, job: Job, until: float) -> None:
        job.state = JobState.DELAYED
        job.ready_at = until
        self.clock.call_at(until, lambda: self._wake(job))

    def _hold_until(self, job: Job, start: float) -> None:
        """A rate-limited task waits for the start the dispatcher gave it."""
        self._delay(job, start)
        self.steps.save(job)

    def _wake(self, job: Job) -> None:
        if job.state is JobState.DELAYED and self._live.get(job.id) is job:
            self.dispatch.enqueue(job)
            self.steps.save(job)

    def _timed_out(self, job: Job, worker: WorkerHandle) -> None:
        message = f"task {job.name!r} exceeded its timeout"
        self._settle(job, None, Failure(type_name="coda.TaskTimeout", message=message))
        self._replace_worker(worker.id)

    def _replace_worker(self, worker_id: int) -> None:
        """Have a worker process killed (the pool starts another); the jobs it
        still holds are requeued without blame."""
        self._killed_on_purpose.add(worker_id)
        self._on_hung_worker(worker_id)

    def _count(self, name: str, what: str, n: int = 1) -> None:
        counts = self.counts.get(name)
        if counts is None:
            counts = self.counts[name] = Counter()
        counts[what] += n


def _outcome_label(state: JobState) -> str:
    """The status counter of a finished job's state."""
    return {JobState.SUCCEEDED: "succeeded", JobState.CANCELLED: "cancelled"}.get(state, "failed")


def _interned(args: Payload) -> Payload:
    """The payload with its content type and encoding shared with every other
    job's: a queued job then costs its body, not three more strings."""
    return Payload(sys.intern(args.content_type), sys.intern(args.content_encoding), args.body)
