"""What a supervisor offers its extensions (``ExtensionHost``): the broker
reads jobs and workers through it, and submits, cancels and purges."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING

from .. import registry
from .._wire import parse_address
from ..errors import CodaError
from ..messages import Kind, Submit
from .extension import ClientPeer, JobSummary, WorkerSummary
from .jobs import Job, JobState

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["SupervisorHost"]


class SupervisorHost:
    """What a supervisor offers its extensions (``ExtensionHost``)."""

    def __init__(self, supervisor: Supervisor) -> None:
        self.config = supervisor.config
        self.clock = supervisor.clock
        self._engine = supervisor.engine
        self._supervisor = supervisor

    @property
    def supervisor_id(self) -> str:
        return self._supervisor.id

    def advertised_address(self) -> str | None:
        tcp = [a for a in self._supervisor.addresses if parse_address(a)[0] == "tcp"]
        if not tcp:
            return None
        host, _, port = tcp[0].rpartition(":")
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = socket.getfqdn()
        return f"{host}:{port}"

    def submit(self, peer: ClientPeer, message: Submit) -> None:
        self._engine.submit(peer, message)

    def is_task(self, name: str) -> bool:
        try:
            return registry.get_spec(name).kind == "task"
        except CodaError:
            return False

    def cancel(self, run_id: str, terminate: bool = False) -> str | None:
        return self._engine.cancel_run(run_id, terminate)

    def purge(self, queue: str) -> int:
        return self._engine.queries.purge_queue(queue)

    def cancel_waiting(self, run_id: str) -> bool:
        summary = self.job(run_id)
        if summary is None or summary.started:
            return False
        # a prefetched task is "cancelling" until its worker drops it: it never runs
        return self._engine.cancel_run(run_id) is not None

    def job(self, run_id: str) -> JobSummary | None:
        job = self._engine.live_jobs().get(run_id)
        return None if job is None else self._summary(job)

    def jobs(self, kind: Kind = "task") -> list[JobSummary]:
        found = [job for job in self._engine.live_jobs().values() if job.kind == kind]
        found.sort(key=lambda job: job.created_at)
        return [self._summary(job) for job in found]

    def _summary(self, job: Job) -> JobSummary:
        worker = None if job.worker is None else self._engine.dispatch.workers.get(job.worker)
        running = job.state is JobState.RUNNING
        return JobSummary(
            id=job.id,
            kind=job.kind,
            name=job.name,
            queue=job.queue,
            state=job.state.value,
            args=job.args,
            attempt=job.attempt,
            parent_run=job.parent_run,
            ready_at=job.ready_at if job.state is JobState.DELAYED else None,
            started_at=job.started_at if running else None,
            worker_pid=None if worker is None else worker.pid,
            started=running and worker is not None and job.id not in worker.held,
        )

    def workers(self) -> list[WorkerSummary]:
        return [
            WorkerSummary(w.id, w.pid, w.queues, w.task_slots, w.started_tasks)
            for w in sorted(self._engine.dispatch.workers.values(), key=lambda w: w.id)
        ]

    def task_names(self) -> list[str]:
        return sorted(name for name, spec in registry.all_specs().items() if spec.kind == "task")

    def counts(self) -> Mapping[str, Mapping[str, int]]:
        return {name: dict(counts) for name, counts in self._engine.counts.items()}
