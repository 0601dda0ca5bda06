"""What the dashboard reads from this supervisor (``coda.dashboard.RunSource``).

In-process and on the supervisor's loop: the same answers as ``coda status``
(``Supervisor.status``), ``coda runs`` / ``coda show`` (``queries.py``) and
``coda cancel`` (``cancel.py``), plus what a page shows that the CLI does
not: what each worker runs now, throughput per name and per queue, and the
recent failed runs.

Rates are finished jobs per second over the last minute, from samples of
the counters taken when the overview is asked for (the page polls it; asked
for seldom, a rate covers the time since the last sample at least a minute
old); a queue's rate adds up the rates of the names whose default queue it
is.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from .._cli_views import job_dict
from ..errors import CodaError, RequestRefusedError
from ..messages import JobView
from .engine import Engine
from .jobs import Job
from .peers import NameInfo, WorkerHandle

__all__ = ["RATE_WINDOW", "ReadModel"]

RATE_WINDOW = 60.0  # seconds of counters a rate looks back over
_SAMPLE_EVERY = 1.0
_FINISHED = ("succeeded", "failed", "cancelled")
RECENT_FAILURES = 10


class ReadModel:
    def __init__(
        self,
        engine: Engine,
        status: Callable[[], dict[str, Any]],
        lookup: Callable[[str], NameInfo],
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self._engine = engine
        self._status = status
        self._lookup = lookup
        self._now = now
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    # -- RunSource ----------------------------------------------------------

    def overview(self) -> dict[str, Any]:
        status = self._status()
        rates = self._rates()
        depths: dict[str, dict[str, int]] = status.get("queues", {})
        consumed = {queue for worker in self._workers() for queue in worker.queues}
        queues = [
            {
                "name": name,
                "tasks": depths.get(name, {}).get("tasks", 0),
                "workflows": depths.get(name, {}).get("workflows", 0),
                "rate": self._queue_rate(name, rates),
            }
            for name in sorted(consumed | set(depths))
        ]
        names = {
            name: {**counts, "rate": rates.get(name, 0.0)}
            for name, counts in status.get("names", {}).items()
        }
        failed = self._engine.queries.list_runs(state="failed", limit=RECENT_FAILURES)
        return {
            "supervisor": status.get("supervisor", {}),
            "workers": [self._worker(w) for w in self._workers()],
            "queues": queues,
            "delayed": status.get("delayed", 0),
            "runs_in_flight": status.get("runs_in_flight", 0),
            "jobs_in_flight": status.get("jobs_in_flight", 0),
            "names": names,
            "recent_failures": [job_dict(run) for run in failed],
            "schedules": status.get("schedules", []),
            "rate_window": RATE_WINDOW,
        }

    def list_runs(
        self, *, state: str | None, name: str | None, since: float | None, limit: int
    ) -> list[JobView]:
        return self._engine.queries.list_runs(state=state, name=name, since=since, limit=limit)

    def run(self, run_id: str) -> tuple[JobView, list[JobView]]:
        return self._engine.queries.run(run_id)

    async def cancel(self, run_id: str) -> str:
        """As ``coda cancel``: answered once the cancel is durable."""
        cancellations = self._engine.cancellations
        job = cancellations.cancellable(run_id)
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def answer(outcome: str | RequestRefusedError) -> None:
            if answered.done():
                return
            if isinstance(outcome, RequestRefusedError):
                answered.set_exception(outcome)
            else:
                answered.set_result(outcome)

        cancellations.begin_durably(job, False, answer)
        return await answered

    # -- workers and rates --------------------------------------------------

    def _workers(self) -> list[WorkerHandle]:
        return sorted(self._engine.dispatch.workers.values(), key=lambda w: w.id)

    def _worker(self, worker: WorkerHandle) -> dict[str, Any]:
        live = self._engine.live_jobs()
        jobs = [live[i] for i in (*worker.workflows, *worker.tasks) if i in live]
        return {
            "id": worker.id,
            "pid": worker.pid,
            "queues": list(worker.queues),
            "tasks": f"{worker.started_tasks}/{worker.task_slots}",
            "workflows": f"{len(worker.workflows)}/{worker.workflow_slots}",
            "running": [_running(job, job.id in worker.held) for job in jobs],
        }

    def _rates(self) -> dict[str, float]:
        now = self._now()
        finished = {
            name: sum(counts.get(what, 0) for what in _FINISHED)
            for name, counts in self._engine.counts.items()
        }
        samples = self._samples
        while len(samples) > 1 and now - samples[1][0] >= RATE_WINDOW:
            samples.popleft()  # the oldest kept is the last one a window or more ago
        if not samples or now - samples[-1][0] >= _SAMPLE_EVERY:
            samples.append((now, finished))
        then, before = samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return {}
        return {
            name: round((count - before.get(name, 0)) / elapsed, 3)
            for name, count in finished.items()
        }

    def _queue_rate(self, queue: str, rates: Mapping[str, float]) -> float:
        total = 0.0
        for name, rate in rates.items():
            try:
                if self._lookup(name).queue == queue:
                    total += rate
            except CodaError:  # a name no longer registered here
                continue
        return round(total, 3)


def _running(job: Job, held: bool) -> dict[str, Any]:
    return {
        "id": job.id,
        "kind": job.kind,
        "name": job.name,
        "run": job.parent_run or job.id,
        "state": "prefetched" if held else job.state.value,
        "started_at": job.started_at,
    }
