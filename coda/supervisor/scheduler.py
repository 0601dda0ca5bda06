"""The scheduler: who runs what, and who hears about the result.

It owns the live state of the supervisor: ready queues per (kind, queue),
the lease of every running job (which worker holds it), the waiters of every
unfinished job, and retry timers. It does no I/O of its own: messages go
out through ``Peer.send`` and persistence goes through a ``Store``, so the
whole of it runs in one thread, synchronously, one message at a time.

Slots: a worker announces how many tasks and how many workflows it runs at
once. Workflows and tasks have separate slots, so a workflow waiting on its
tasks never holds the slot those tasks need (no deadlock with one worker).
A job is sent to a worker only when it has a free slot of the job's kind:
there is no prefetch beyond that.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from ..errors import CodaError, UnknownNameError
from ..messages import (
    Accepted,
    Await,
    Error,
    Failure,
    Finished,
    Message,
    Payload,
    RunTask,
    RunWorkflow,
    Spawn,
    Submit,
    TaskDone,
    WorkflowDone,
)
from .jobs import Job, JobState
from .store import CacheKey, Store

__all__ = ["NameInfo", "Peer", "Scheduler", "WorkerHandle"]

log = logging.getLogger("coda.scheduler")


class Peer(Protocol):
    """A connection the scheduler can answer on."""

    @property
    def is_open(self) -> bool: ...

    def send(self, message: Message) -> None: ...


class NameInfo(Protocol):
    """What the scheduler needs to know about a registered name."""

    @property
    def kind(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def timeout(self) -> float | None: ...


@dataclass(eq=False)
class WorkerHandle:
    id: int
    peer: Peer
    pid: int
    queues: tuple[str, ...]
    task_slots: int
    workflow_slots: int
    tasks: set[str] = field(default_factory=set)
    workflows: set[str] = field(default_factory=set)


def new_id() -> str:
    return os.urandom(16).hex()


class Scheduler:
    def __init__(
        self,
        store: Store,
        lookup: Callable[[str], NameInfo],
        *,
        accept_content: frozenset[str],
        on_hung_worker: Callable[[int], None] = lambda worker_id: None,
        max_worker_losses: int = 5,
        timeout_grace: float = 2.0,
    ) -> None:
        self.store = store
        self._lookup = lookup
        self._accept = accept_content
        self._on_hung_worker = on_hung_worker
        self._max_worker_losses = max_worker_losses
        self._timeout_grace = timeout_grace
        self._live: dict[str, Job] = {}
        self._ready: dict[tuple[str, str], deque[Job]] = {}
        self._waiters: dict[str, list[tuple[Peer, int]]] = {}
        self._workers: dict[int, WorkerHandle] = {}
        self._pump_pending = False
        self._rotation = 0
        self._draining = False
        self._on_idle: Callable[[], None] | None = None
        self.counts: dict[str, Counter[str]] = {}

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
        info = self._checked(peer, msg.req_id, msg.name, msg.args, kind=None)
        if info is None:
            return
        existing = self._find(msg.run_id) if msg.run_id else None
        if existing is not None:  # a resubmission with the same id is idempotent
            job = existing
        else:
            job = Job(
                id=msg.run_id or new_id(),
                kind=info.kind,
                name=msg.name,
                args=msg.args,
                queue=msg.queue or info.queue,
            )
            self._add(job, not_before=msg.not_before)

        def acknowledge() -> None:
            peer.send(Accepted(req_id=msg.req_id, run_id=job.id, kind=_kind(job)))
            if msg.wait:
                self._wait_for(job, peer, msg.req_id)

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
        self._wait_for(job, peer, msg.req_id)

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
        info = self._checked(worker.peer, msg.req_id, msg.name, msg.args, kind=msg.kind)
        if info is None:
            return
        key: CacheKey | None = None
        if msg.cache_key is not None:
            key = (msg.run_id, msg.name, msg.cache_key)
            cached = self._cached_job(key)
            if cached is not None:
                self._count(msg.name, "cache_hits")
                self._wait_for(cached, worker.peer, msg.req_id)
                return
        job = Job(
            id=new_id(),
            kind=msg.kind,
            name=msg.name,
            args=msg.args,
            queue=msg.queue or info.queue,
            parent_run=msg.run_id,
            cache_key=msg.cache_key,
        )
        self._add(job)
        if key is not None:
            self.store.set_cached(key, job.id)
        self._wait_for(job, worker.peer, msg.req_id)

    def task_done(self, worker: WorkerHandle, msg: TaskDone) -> None:
        job = self._live.get(msg.job_id)
        if job is None or job.worker != worker.id or msg.job_id not in worker.tasks:
            log.info("ignoring a late result for task %s", msg.job_id)
            return
        worker.tasks.discard(job.id)
        if (
            msg.retry_args is not None
            and msg.failure is not None
            and msg.failure.retry_in is not None
        ):
            job.args = msg.retry_args  # the task re-enqueued itself with new arguments
        self._settle(job, msg.result, msg.failure)
        self._schedule_pump()

    def workflow_done(self, worker: WorkerHandle, msg: WorkflowDone) -> None:
        job = self._live.get(msg.run_id)
        if job is None or job.worker != worker.id or job.attempt != msg.attempt:
            log.info("ignoring a late end of workflow run %s", msg.run_id)
            return
        worker.workflows.discard(job.id)
        self._settle(job, msg.result, msg.failure)
        self._schedule_pump()

    # -- workers coming and going -----------------------------------------

    def worker_joined(self, worker: WorkerHandle) -> None:
        self._workers[worker.id] = worker
        self._schedule_pump()

    def worker_left(self, worker_id: int) -> None:
        """Requeue, at the head of their queues, the jobs the worker held.

        While draining, workers are being let go on purpose: that is not a
        loss to count against the jobs they held."""
        worker = self._workers.pop(worker_id, None)
        if worker is None:
            return
        held = [self._live[i] for i in (*worker.tasks, *worker.workflows) if i in self._live]
        held.sort(key=lambda job: job.created_at, reverse=True)
        for job in held:
            if not self._draining:
                job.losses += 1
            job.worker = None
            if job.losses > self._max_worker_losses:
                failure = Failure(
                    type_name="coda.WorkerLost",
                    message=f"the worker running it died {job.losses} times; giving up",
                )
                self._settle(job, None, failure)
                continue
            job.state = JobState.QUEUED
            self.store.save_job(job)
            self._queue_for(job).appendleft(job)
        self._schedule_pump()

    # -- recovery and housekeeping ----------------------------------------

    def recover(self) -> int:
        """Take back the unfinished jobs of a previous supervisor generation."""
        count = 0
        for job in sorted(self.store.unfinished_jobs(), key=lambda j: j.created_at):
            self._live[job.id] = job
            job.worker = None
            if job.state is JobState.DELAYED:
                self._delay(job, max(0.0, job.ready_at - time.time()))
            else:
                job.state = JobState.QUEUED
                self._queue_for(job).append(job)
            self.store.save_job(job)
            count += 1
        self._schedule_pump()
        return count

    def expire(self, ttl: float, done: Callable[[int], None]) -> None:
        """Forget runs finished more than ``ttl`` seconds ago; the store may
        work in the background and calls ``done(dropped)`` when it is done."""
        self.store.expire_soon(time.time() - ttl, done)

    # -- graceful shutdown (the supervisor drives it) -----------------------

    def drain(self, on_idle: Callable[[], None]) -> None:
        """Take no new work: refuse submits and start no job, then call
        ``on_idle`` once no task is leased to a worker (tasks running now may
        finish and be answered). Spawns are still recorded, queued for the next
        supervisor. Workflows mid-run are not waited for: they stay unfinished
        in the store and are rerun, from their cached steps, after a restart."""
        self._draining = True
        self._on_idle = on_idle
        self._schedule_pump()

    @property
    def draining(self) -> bool:
        return self._draining

    def in_flight(self) -> int:
        """How many tasks are leased to workers right now."""
        return sum(len(worker.tasks) for worker in self._workers.values())

    def _check_idle(self) -> None:
        if self._on_idle is not None and self.in_flight() == 0:
            on_idle, self._on_idle = self._on_idle, None
            on_idle()

    def status(self) -> dict[str, object]:
        queues: dict[str, Counter[str]] = {}
        for (kind, queue), ready in self._ready.items():
            queues.setdefault(queue, Counter())[kind + "s"] += len(ready)
        delayed = sum(1 for job in self._live.values() if job.state is JobState.DELAYED)
        return {
            "workers": [
                {
                    "id": w.id,
                    "pid": w.pid,
                    "queues": list(w.queues),
                    "tasks": f"{len(w.tasks)}/{w.task_slots}",
                    "workflows": f"{len(w.workflows)}/{w.workflow_slots}",
                }
                for w in sorted(self._workers.values(), key=lambda w: w.id)
            ],
            "queues": {name: dict(counts) for name, counts in sorted(queues.items())},
            "delayed": delayed,
            "runs_in_flight": sum(1 for j in self._live.values() if j.parent_run is None),
            "jobs_in_flight": len(self._live),
            "names": {name: dict(c) for name, c in sorted(self.counts.items())},
            "store": self.store.statistics(),
        }

    # -- internals --------------------------------------------------------

    def _checked(
        self, peer: Peer, req_id: int, name: str, args: Payload, kind: str | None
    ) -> NameInfo | None:
        """Look the name up and vet the payload; answer the refusal if any."""
        try:
            info = self._lookup(name)
            if kind is not None and info.kind != kind:
                raise UnknownNameError(name, kind)
        except CodaError as exc:
            peer.send(Error(code="unknown_name", message=str(exc), req_id=req_id))
            return None
        if args.content_type not in self._accept:
            peer.send(
                Error(
                    code="content_disallowed",
                    message=(
                        f"content type {args.content_type!r} is not accepted by this supervisor "
                        f"(accepted: {', '.join(sorted(self._accept))})"
                    ),
                    req_id=req_id,
                )
            )
            return None
        return info

    def _find(self, job_id: str | None) -> Job | None:
        if job_id is None:
            return None
        return self._live.get(job_id) or self.store.get_job(job_id)

    def _cached_job(self, key: CacheKey) -> Job | None:
        """The job answering a cache key, unless it failed (then run again)."""
        job_id = self.store.get_cached(key)
        job = self._find(job_id)
        if job is None or job.state is JobState.FAILED:
            return None
        return job

    def _add(self, job: Job, not_before: float | None = None) -> None:
        self._live[job.id] = job
        wait = 0.0 if not_before is None else not_before - time.time()
        if wait > 0:  # a countdown / eta: hold it back, as a retry delay does
            self._delay(job, wait)
            self.store.save_job(job)
            return
        self.store.save_job(job)
        self._queue_for(job).append(job)
        self._schedule_pump()

    def _queue_for(self, job: Job) -> deque[Job]:
        key = (job.kind, job.queue)
        ready = self._ready.get(key)
        if ready is None:
            ready = self._ready[key] = deque()
        return ready

    def _wait_for(self, job: Job, peer: Peer, req_id: int) -> None:
        if job.state.finished:  # its end may be this turn's, not yet committed
            self.store.after_commit(lambda: _notify([(peer, req_id)], job))
        else:
            self._waiters.setdefault(job.id, []).append((peer, req_id))

    def _settle(self, job: Job, result: Payload | None, failure: Failure | None) -> None:
        job.worker = None
        if failure is not None and failure.retry_in is not None:
            job.attempt += 1
            job.failure = failure
            self._count(job.name, "retried")
            self._delay(job, failure.retry_in)
            self.store.save_job(job)
            return
        job.state = JobState.FAILED if failure is not None else JobState.SUCCEEDED
        job.result = result
        job.failure = failure
        job.finished_at = time.time()
        self.store.save_job(job)
        del self._live[job.id]
        self._count(job.name, "failed" if failure is not None else "succeeded")
        waiters = self._waiters.pop(job.id, None)
        if waiters:
            self.store.after_commit(lambda: _notify(waiters, job))

    def _delay(self, job: Job, seconds: float) -> None:
        job.state = JobState.DELAYED
        job.ready_at = time.time() + seconds
        asyncio.get_running_loop().call_later(seconds, self._wake, job)

    def _wake(self, job: Job) -> None:
        if job.state is JobState.DELAYED and self._live.get(job.id) is job:
            job.state = JobState.QUEUED
            self.store.save_job(job)
            self._queue_for(job).append(job)
            self._schedule_pump()

    def _schedule_pump(self) -> None:
        if not self._pump_pending:
            self._pump_pending = True
            asyncio.get_running_loop().call_soon(self._pump)

    def _pump(self) -> None:
        """Hand ready jobs to workers with free slots."""
        self._pump_pending = False
        if self._draining:
            self._check_idle()
            return
        workers = list(self._workers.values())
        if not workers:
            return
        self._rotation = (self._rotation + 1) % len(workers)
        for worker in workers[self._rotation :] + workers[: self._rotation]:
            while len(worker.tasks) < worker.task_slots:
                job = self._pop_ready(worker.queues, "task")
                if job is None:
                    break
                worker.tasks.add(job.id)
                self._start(worker, job)
            while len(worker.workflows) < worker.workflow_slots:
                job = self._pop_ready(worker.queues, "workflow")
                if job is None:
                    break
                worker.workflows.add(job.id)
                self._start(worker, job)

    def _pop_ready(self, queues: tuple[str, ...], kind: str) -> Job | None:
        for queue in queues:
            ready = self._ready.get((kind, queue))
            while ready:
                job = ready.popleft()
                if job.state is JobState.QUEUED and self._live.get(job.id) is job:
                    return job
        return None

    def _start(self, worker: WorkerHandle, job: Job) -> None:
        job.state = JobState.RUNNING
        job.worker = worker.id
        self.store.save_job(job)
        if job.kind == "workflow":
            worker.peer.send(
                RunWorkflow(run_id=job.id, name=job.name, args=job.args, attempt=job.attempt)
            )
            return
        worker.peer.send(
            RunTask(
                job_id=job.id,
                name=job.name,
                args=job.args,
                attempt=job.attempt,
                run_id=job.parent_run,
                redelivered=job.losses > 0,
            )
        )
        timeout = self._timeout_of(job.name)
        if timeout is not None:
            asyncio.get_running_loop().call_later(
                timeout + self._timeout_grace, self._check_timeout, job, job.attempt, worker
            )

    def _timeout_of(self, name: str) -> float | None:
        try:
            return self._lookup(name).timeout
        except CodaError:
            return None

    def _check_timeout(self, job: Job, attempt: int, worker: WorkerHandle) -> None:
        """A sync task past its timeout cannot be interrupted: replace its worker."""
        if job.state is not JobState.RUNNING or job.attempt != attempt or job.worker != worker.id:
            return
        log.warning(
            "task %s (%s) exceeded its timeout; replacing worker %s", job.name, job.id, worker.id
        )
        worker.tasks.discard(job.id)
        self._settle(
            job,
            None,
            Failure(
                type_name="coda.TaskTimeout", message=f"task {job.name!r} exceeded its timeout"
            ),
        )
        self._on_hung_worker(worker.id)

    def _count(self, name: str, what: str) -> None:
        counts = self.counts.get(name)
        if counts is None:
            counts = self.counts[name] = Counter()
        counts[what] += 1


def _kind(job: Job) -> Literal["task", "workflow"]:
    return "workflow" if job.kind == "workflow" else "task"


def _finished(req_id: int, job: Job) -> Finished:
    return Finished(
        req_id=req_id, run_id=job.id, kind=_kind(job), result=job.result, failure=job.failure
    )


def _notify(waiters: list[tuple[Peer, int]], job: Job) -> None:
    for peer, req_id in waiters:
        if peer.is_open:
            peer.send(_finished(req_id, job))
