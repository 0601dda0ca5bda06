"""Who waits for which job, and telling them once its end is durable.

A client awaiting a run, a workflow awaiting its spawn: each is a peer and
the request id to answer with ``Finished``. The answer is sent only once
the job's end is committed (``Store.after_commit``), so nobody acts on a
result a crash could still take back.
"""

from __future__ import annotations

from ..messages import Finished
from .jobs import Job
from .peers import Peer
from .stores.base import Store

__all__ = ["Waiters", "finished_message"]


class Waiters:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._by_job: dict[str, list[tuple[Peer, int]]] = {}

    def add(self, job: Job, peer: Peer, req_id: int) -> None:
        """Answer ``req_id`` on ``peer`` when ``job`` ends (soon, if it has:
        its end may be this turn's, not yet committed)."""
        if job.state.finished:
            self._store.after_commit(lambda: _notify([(peer, req_id)], job))
        else:
            self._by_job.setdefault(job.id, []).append((peer, req_id))

    def job_ended(self, job: Job) -> None:
        waiters = self._by_job.pop(job.id, None)
        if waiters:
            self._store.after_commit(lambda: _notify(waiters, job))

    def waiting_for(self, job_id: str) -> bool:
        return job_id in self._by_job

    def job_ids(self) -> list[str]:
        return list(self._by_job)

    def count(self) -> int:
        return sum(len(waiting) for waiting in self._by_job.values())


def finished_message(req_id: int, job: Job) -> Finished:
    return Finished(
        req_id=req_id, run_id=job.id, kind=job.kind, result=job.result, failure=job.failure
    )


def _notify(waiters: list[tuple[Peer, int]], job: Job) -> None:
    for peer, req_id in waiters:
        if peer.is_open:
            peer.send(finished_message(req_id, job))
