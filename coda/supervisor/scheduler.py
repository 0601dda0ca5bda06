"""The scheduler: what runs, and who hears about the result.

It owns the live state of the supervisor: every unfinished job, the waiters
of each, and retry timers; ``Dispatcher`` (dispatch.py) hands ready jobs to
workers and keeps their leases. It does no I/O of its own: messages go out
through ``Peer.send`` and persistence goes through a ``Store``, so the whole
of it runs in one thread, synchronously, one message at a time.

Reruns: a workflow run that starts again (a retry, a lost worker, a
supervisor restart) is sent, with ``RunWorkflow``, the results of its
cached spawns that already succeeded, up to ``HISTORY_BUDGET`` bytes of
them; the worker answers those spawns itself, without a round trip.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Literal

from ..errors import CodaError, UnknownNameError
from ..messages import (
    Accepted,
    Await,
    CachedStep,
    Error,
    Failure,
    Finished,
    Payload,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from .dispatch import Dispatcher, NameInfo, Peer, WorkerHandle
from .jobs import Job, JobState
from .store import CacheKey, Store

__all__ = ["HISTORY_BUDGET", "NameInfo", "Peer", "Scheduler", "WorkerHandle"]

log = logging.getLogger("coda.scheduler")

HISTORY_BUDGET = 8 * 1024 * 1024  # bytes of cached results sent with one RunWorkflow


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
        self._live: dict[str, Job] = {}
        self._waiters: dict[str, list[tuple[Peer, int]]] = {}
        self._draining = False
        self._on_idle: Callable[[], None] | None = None
        # the cache keys of workflow runs started by this generation, while they
        # are unfinished: all of them, so a key not here is a miss without a read
        self._run_keys: dict[str, dict[tuple[str, bytes], str]] = {}
        self.counts: dict[str, Counter[str]] = {}
        self.dispatch = Dispatcher(
            store,
            lookup,
            self._live,
            history=self._history,
            on_timeout=self._timed_out,
            on_pause=self._check_idle,
            timeout_grace=timeout_grace,
        )

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
                name=sys.intern(msg.name),
                args=_interned(msg.args),
                queue=sys.intern(msg.queue or info.queue),
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
            name=sys.intern(msg.name),
            args=_interned(msg.args),
            queue=sys.intern(msg.queue or info.queue),
            parent_run=msg.run_id,
            cache_key=msg.cache_key,
        )
        self._add(job)
        if key is not None:
            self.store.set_cached(key, job.id)
            keys = self._run_keys.get(msg.run_id)
            if keys is not None:
                keys[key[1:]] = job.id
        self._wait_for(job, worker.peer, msg.req_id)

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
        """Requeue, at the head of their queues, the jobs the worker held.

        While draining, workers are being let go on purpose: that is not a
        loss to count against the jobs they held. Nor is a task the worker
        held back and never started."""
        for job, started in self.dispatch.leave(worker_id):
            if started and not self._draining:
                job.losses += 1
            job.worker = None
            if job.losses > self._max_worker_losses:
                failure = Failure(
                    type_name="coda.WorkerLost",
                    message=f"the worker running it died {job.losses} times; giving up",
                )
                self._settle(job, None, failure)
                continue
            self.dispatch.enqueue(job, front=True)
            self.store.save_job(job)

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
                self.dispatch.enqueue(job)
            self.store.save_job(job)
            count += 1
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

    def status(self) -> dict[str, object]:
        queues = self.dispatch.queued()
        delayed = sum(1 for job in self._live.values() if job.state is JobState.DELAYED)
        return {
            "workers": [
                {
                    "id": w.id,
                    "pid": w.pid,
                    "queues": list(w.queues),
                    "tasks": f"{w.started_tasks}/{w.task_slots}",
                    "held": len(w.held),
                    "workflows": f"{len(w.workflows)}/{w.workflow_slots}",
                }
                for w in sorted(self.dispatch.workers.values(), key=lambda w: w.id)
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
        keys = self._run_keys.get(key[0])
        job_id = self.store.get_cached(key) if keys is None else keys.get(key[1:])
        job = self._find(job_id)
        if job is None or job.state is JobState.FAILED:
            return None
        return job

    def _add(self, job: Job, not_before: float | None = None) -> None:
        self._live[job.id] = job
        if job.kind == "workflow":  # a new run: no cache entry of it exists anywhere yet
            self._run_keys[job.id] = {}
        wait = 0.0 if not_before is None else not_before - time.time()
        if wait > 0:  # a countdown / eta: hold it back, as a retry delay does
            self._delay(job, wait)
            self.store.save_job(job)
            return
        self.store.save_job(job)
        self.dispatch.enqueue(job)

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
        self._run_keys.pop(job.id, None)
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
            self.dispatch.enqueue(job)
            self.store.save_job(job)

    def _history(self, job: Job) -> list[CachedStep]:
        """What a starting workflow run may answer itself: its cached spawns
        that succeeded, oldest first, up to ``HISTORY_BUDGET`` bytes. A run
        of this generation that has spawned nothing yet has none, and that
        is known without asking the store."""
        if self._run_keys.get(job.id) == {}:
            return []
        budget = HISTORY_BUDGET - len(job.args.body)
        history = []
        for name, key, step in self.store.cached_steps(job.id):
            if step.state is not JobState.SUCCEEDED or step.result is None:
                continue
            budget -= len(step.result.body) + len(key) + len(name)
            if budget < 0:
                break
            history.append(CachedStep(_kind(step), name, key, step.result))
        return history

    def _timed_out(self, job: Job, worker: WorkerHandle) -> None:
        self._settle(
            job,
            None,
            Failure(
                type_name="coda.TaskTimeout", message=f"task {job.name!r} exceeded its timeout"
            ),
        )
        self._on_hung_worker(worker.id)

    def _count(self, name: str, what: str, n: int = 1) -> None:
        counts = self.counts.get(name)
        if counts is None:
            counts = self.counts[name] = Counter()
        counts[what] += n


def _interned(args: Payload) -> Payload:
    """The payload with its content type and encoding shared with every other
    job's: a queued job then costs its body, not three more strings."""
    return Payload(sys.intern(args.content_type), sys.intern(args.content_encoding), args.body)


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
