"""Dispatch: which worker runs which ready job, and the leases they hold.

The ``Engine`` decides what becomes ready and what an outcome means; this
module hands ready jobs to workers and keeps count of what each holds.

Slots: a worker announces how many tasks and how many workflows it runs at
once. Workflows and tasks have separate slots, so a workflow waiting on its
tasks never holds the slot those tasks need (no deadlock with one worker).

Prefetch: beyond its task slots a worker is sent up to ``prefetch`` more
tasks, which it holds back and starts, in arrival order, as its slots free
up. The worker then never idles for a round trip between two tasks, and a
burst of tasks travels in fewer, larger writes. Every worker's free slots
are filled before any worker is sent tasks to hold, so gathered spawns run
side by side on idle workers instead of queueing in one worker's prefetch.

Leased is not started. The worker reports every task it starts with
``Started`` (a few bytes, in the same write as the ``TaskDone`` of the task
whose slot it takes), and only the worker knows when that is: a task sent
while the supervisor still counted a slot busy may find it free. So a task
counts as *held* from dispatch until its ``Started``: only then does its
timeout begin, and if the worker dies, a task it never started goes back
to its queue without counting as a loss (it cannot have killed the worker)
and without ``redelivered`` (an early-acked Celery task must not be failed
as lost when it never ran).

Rate limits: see ``ratelimit``.

Isolation: a job suspected, together with others, of killing its worker
too often (see ``Engine.worker_left``) is *isolated*: it is given only to a
worker that holds no other job of its kind, and that worker gets no other
job of its kind while it holds it. Its next deaths are then its own.
"""

from __future__ import annotations

import contextlib
import logging
from collections import Counter, deque
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import CodaError
from ..messages import CachedStep, RunTask, RunWorkflow
from .clock import Clock, Timer
from .jobs import Job, JobState
from .peers import NameInfo, WorkerHandle
from .ratelimit import RateLimits

__all__ = ["Dispatcher"]

log = logging.getLogger("coda.dispatch")


class Dispatcher:
    """Ready queues per (kind, queue), the workers, and their leases."""

    def __init__(
        self,
        lookup: Callable[[str], NameInfo],
        live: Mapping[str, Job],
        clock: Clock,
        *,
        save: Callable[[Job], None],
        history: Callable[[Job], list[CachedStep]],
        on_timeout: Callable[[Job, WorkerHandle], None],
        on_pause: Callable[[], None],
        timeout_grace: float,
        on_rate_limited: Callable[[Job, float], None] = lambda job, due: None,
        on_start: Callable[[Job], None] = lambda job: None,
    ) -> None:
        self._save = save
        self._on_start = on_start  # a job's attempt began on its worker
        self._clock = clock
        self._lookup = lookup
        self._live = live
        self._history = history
        self._on_timeout = on_timeout
        self._on_pause = on_pause
        self._timeout_grace = timeout_grace
        self._rate_limits = RateLimits(lookup, clock, live, on_rate_limited)
        self.workers: dict[int, WorkerHandle] = {}
        self.paused = False
        self._ready: dict[tuple[str, str], deque[Job]] = {}
        self._isolated: dict[tuple[str, str], deque[Job]] = {}
        self._timers: dict[str, Timer] = {}
        self._pump_pending = False
        self._rotation = 0
        # told of room that jobs ready here will not fill: (kind, queues, room)
        self.on_starved: Callable[[str, tuple[str, ...], int], None] | None = None

    # -- ready queues -----------------------------------------------------

    def enqueue(self, job: Job, *, front: bool = False) -> None:
        """Make a job ready: at the back of its queue, or at the head (a job
        given back by a dead worker goes before newer ones)."""
        job.state = JobState.QUEUED
        key = (job.kind, job.queue)
        queues = self._isolated if job.isolated else self._ready
        ready = queues.get(key)
        if ready is None:
            ready = queues[key] = deque()
        if front:
            ready.appendleft(job)
        else:
            ready.append(job)
        self.schedule_pump()

    def take_waiting(self, queue: str) -> list[Job]:
        """Take every job ready and waiting in ``queue`` (not started, not
        held back) out of it, oldest first: they are being purged."""
        found = []
        for waiting in (self._ready, self._isolated):
            for (_, name), ready in waiting.items():
                if name == queue:
                    found += [job for job in ready if self._is_waiting(job)]
                    ready.clear()
        found.sort(key=lambda job: job.created_at)
        return found

    def withdraw(self, job: Job) -> None:
        """Take one job out of its queue (it is cancelled before it started),
        so the queue's depth no longer counts it."""
        ready = (self._isolated if job.isolated else self._ready).get((job.kind, job.queue))
        if ready is not None:
            with contextlib.suppress(ValueError):
                ready.remove(job)

    def _is_waiting(self, job: Job) -> bool:
        return job.state is JobState.QUEUED and self._live.get(job.id) is job

    def queued(self) -> dict[str, Counter[str]]:
        """Per queue, how many tasks and workflows wait (status)."""
        queues: dict[str, Counter[str]] = {}
        for waiting in (self._ready, self._isolated):
            for (kind, queue), ready in waiting.items():
                queues.setdefault(queue, Counter())[kind + "s"] += len(ready)
        return queues

    # -- workers and their leases -------------------------------------------

    def join(self, worker: WorkerHandle) -> None:
        self.workers[worker.id] = worker
        self.schedule_pump()

    def leave(self, worker_id: int) -> list[tuple[Job, bool]]:
        """Forget a worker; return the jobs it held, each with whether it had
        started (a held-back task had not), the last sent first (requeued at
        the head of their queues one by one, they keep their order)."""
        worker = self.workers.pop(worker_id, None)
        if worker is None:
            return []
        held: list[tuple[Job, bool]] = []
        for job_id in (*worker.tasks, *worker.workflows):
            self._cancel_timeout(job_id)
            job = self._live_job(job_id)
            if job is not None:
                held.append((job, job_id not in worker.held))
        held.reverse()
        self.schedule_pump()
        return held

    def started(self, worker: WorkerHandle, job_id: str) -> None:
        """The worker started a task: its timeout runs from now."""
        if job_id not in worker.tasks:
            return  # late: the lease has already ended
        worker.held.discard(job_id)
        job = self._live_job(job_id)
        if job is not None:
            self._began(job)
            self._arm_timeout(worker, job)

    def release(self, worker: WorkerHandle, job: Job) -> bool:
        """End the worker's lease on a job; False if it held none."""
        if job.worker != worker.id:
            return False
        if worker.alone.get(job.kind) == job.id:
            del worker.alone[job.kind]
        if job.kind == "workflow":
            if job.id not in worker.workflows:
                return False
            del worker.workflows[job.id]
        else:
            if job.id not in worker.tasks:
                return False
            del worker.tasks[job.id]
            worker.held.discard(job.id)
            self._cancel_timeout(job.id)
        self.schedule_pump()
        return True

    def in_flight(self) -> int:
        """How many tasks are leased to workers right now."""
        return sum(len(worker.tasks) for worker in self.workers.values())

    def worker_status(self) -> list[dict[str, Any]]:
        return [
            {
                "id": w.id,
                "pid": w.pid,
                "queues": list(w.queues),
                "tasks": f"{w.started_tasks}/{w.task_slots}",
                "held": len(w.held),
                "workflows": f"{len(w.workflows)}/{w.workflow_slots}",
            }
            for w in sorted(self.workers.values(), key=lambda w: w.id)
        ]

    # -- handing out work ---------------------------------------------------

    def schedule_pump(self) -> None:
        if not self._pump_pending:
            self._pump_pending = True
            self._clock.defer(self._pump)

    def _pump(self) -> None:
        """Hand ready jobs to workers with free slots (and prefetch room)."""
        self._pump_pending = False
        if self.paused:
            self._on_pause()
            return
        workers = list(self.workers.values())
        if not workers:
            return
        self._rotation = (self._rotation + 1) % len(workers)
        rotated = workers[self._rotation :] + workers[: self._rotation]
        # Free slots everywhere before any prefetch: a task must not wait in one
        # worker's prefetch while another worker has a slot to run it now.
        for worker in rotated:
            self._fill(worker, "task", worker.tasks, worker.task_slots)
        for worker in rotated:
            self._fill(worker, "task", worker.tasks, worker.task_slots + worker.prefetch)
            self._fill(worker, "workflow", worker.workflows, worker.workflow_slots)
        if self.on_starved is not None:
            self._report_room(workers, self.on_starved)

    def _report_room(
        self, workers: list[WorkerHandle], report: Callable[[str, tuple[str, ...], int], None]
    ) -> None:
        """Room to fill from elsewhere (a fleet's unclaimed jobs): slots left
        after filling (nothing here was ready for them), plus what it takes
        to keep one round of work ready here, so that the next jobs are
        fetched while workers still run these, not once they idle."""
        room: dict[tuple[str, tuple[str, ...]], int] = {}
        for worker in workers:
            capacity = {
                "task": worker.task_slots + worker.prefetch,
                "workflow": worker.workflow_slots,
            }
            spare = {
                "task": capacity["task"] - len(worker.tasks),
                "workflow": capacity["workflow"] - len(worker.workflows),
            }
            for kind in ("task", "workflow"):
                if kind not in worker.alone:
                    key = (kind, worker.queues)
                    room[key] = room.get(key, 0) + max(spare[kind], 0) + capacity[kind]
        for (kind, queues), count in room.items():
            ready = sum(len(self._ready.get((kind, queue), ())) for queue in queues)
            if count > ready:
                report(kind, queues, count - ready)

    def _fill(self, worker: WorkerHandle, kind: str, leased: dict[str, None], room: int) -> None:
        """Send jobs of one kind until the worker's room for them is full; an
        isolated job only to a worker holding none, and then nothing else."""
        start = self._start_task if kind == "task" else self._start_workflow
        if kind in worker.alone or room <= 0:
            return
        if not leased:
            job = self._pop_ready(self._isolated, worker.queues, kind)
            if job is not None:
                worker.alone[kind] = job.id
                start(worker, job)
                return
        while len(leased) < room:
            job = self._pop_ready(self._ready, worker.queues, kind)
            if job is None:
                return
            if kind == "task" and not self._rate_limits.admit(job):
                continue
            start(worker, job)

    def _pop_ready(
        self, waiting: dict[tuple[str, str], deque[Job]], queues: tuple[str, ...], kind: str
    ) -> Job | None:
        for queue in queues:
            ready = waiting.get((kind, queue))
            while ready:
                job = ready.popleft()
                if self._is_waiting(job):
                    return job
        return None

    def _lease(self, worker: WorkerHandle, job: Job) -> None:
        job.state = JobState.RUNNING
        job.worker = worker.id
        self._save(job)

    def _start_workflow(self, worker: WorkerHandle, job: Job) -> None:
        worker.workflows[job.id] = None
        self._began(job)  # workflows start as they are sent
        self._lease(worker, job)
        worker.peer.send(
            RunWorkflow(
                run_id=job.id,
                name=job.name,
                args=job.args,
                attempt=job.attempt,
                history=self._history(job),
            )
        )

    def _began(self, job: Job) -> None:
        job.started_at = self._clock.time()
        self._on_start(job)

    def _start_task(self, worker: WorkerHandle, job: Job) -> None:
        worker.tasks[job.id] = None
        worker.held.add(job.id)
        job.started_at = None  # until the worker reports it started
        self._lease(worker, job)
        worker.peer.send(
            RunTask(
                job_id=job.id,
                name=job.name,
                args=job.args,
                attempt=job.attempt,
                run_id=job.parent_run,
                redelivered=job.losses > 0,
                requeued=job.requeues > 0,
            )
        )

    # -- timeouts -------------------------------------------------------------

    def _arm_timeout(self, worker: WorkerHandle, job: Job) -> None:
        try:
            timeout = self._lookup(job.name).timeout
        except CodaError:
            return
        if timeout is None:
            return
        self._cancel_timeout(job.id)
        due = self._clock.time() + timeout + self._timeout_grace
        self._timers[job.id] = self._clock.call_at(due, lambda: self._timed_out(worker, job))

    def _cancel_timeout(self, job_id: str) -> None:
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    def _timed_out(self, worker: WorkerHandle, job: Job) -> None:
        """A sync task past its timeout cannot be interrupted: the engine
        fails it and the worker is replaced."""
        self._timers.pop(job.id, None)
        if job.state is not JobState.RUNNING or job.worker != worker.id:
            return
        log.warning(
            "task %s (%s) exceeded its timeout; replacing worker %s", job.name, job.id, worker.id
        )
        self.release(worker, job)
        self._on_timeout(job, worker)

    def _live_job(self, job_id: str) -> Job | None:
        job = self._live.get(job_id)
        return job if job is not None and job.state is JobState.RUNNING else None
