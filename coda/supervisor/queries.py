"""What an operator asks of the engine: the runs, one run's steps, and
emptying a queue (``coda runs``, ``coda show``, ``coda purge``, the dashboard).

Each answer merges the store's record with the engine's live jobs, which are
newer (a running step is not written until it finishes). A bad filter or an
unknown run gets one line that says what is wrong; nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..messages import (
    Error,
    JobView,
    PurgeQueue,
    PurgeReply,
    RunsReply,
    RunsRequest,
    ShowReply,
    ShowRequest,
)
from .dispatch import Dispatcher, Peer
from .jobs import Job, JobState
from .stores.base import Store

__all__ = ["MAX_RUNS", "Queries", "view"]

MAX_RUNS = 1000  # runs one request may list
_STATES = sorted(state.value for state in JobState)


def view(job: Job) -> JobView:
    return JobView(
        id=job.id,
        kind=job.kind,
        name=job.name,
        state=job.state.value,
        queue=job.queue,
        attempt=job.attempt,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        parent_run=job.parent_run,
        parent_attempt=job.parent_attempt,
        cache_key=job.cache_key,
        losses=job.losses,
        failure=job.failure,
    )


class Queries:
    def __init__(
        self,
        live: Mapping[str, Job],
        store: Store,
        dispatch: Dispatcher,
        cancel: Callable[[Job], None],
    ) -> None:
        self._live = live
        self._store = store
        self._dispatch = dispatch
        self._cancel = cancel

    def runs(self, peer: Peer, msg: RunsRequest) -> None:
        problem = _bad_filter(msg)
        if problem is not None:
            peer.send(Error(code="bad_filter", message=problem, req_id=msg.req_id))
            return
        found = self._store.list_runs(
            state=msg.state, name=msg.name, since=msg.since, limit=msg.limit
        )
        runs = [self._live.get(job.id, job) for job in found]
        peer.send(RunsReply(req_id=msg.req_id, runs=[view(job) for job in runs]))

    def show(self, peer: Peer, msg: ShowRequest) -> None:
        run = self._live.get(msg.run_id) or self._store.get_job(msg.run_id)
        if run is None:
            message = f"no run {msg.run_id!r}: never submitted here, or expired"
            peer.send(Error(code="not_found", message=message, req_id=msg.req_id))
            return
        steps = {job.id: job for job in self._store.children(run.id)}
        steps.update((j.id, j) for j in self._live.values() if j.parent_run == run.id)
        ordered = sorted(steps.values(), key=lambda job: job.created_at)
        reply = ShowReply(req_id=msg.req_id, run=view(run), steps=[view(j) for j in ordered])
        peer.send(reply)

    def purge(self, peer: Peer, msg: PurgeQueue) -> None:
        reply = PurgeReply(req_id=msg.req_id, queue=msg.queue, purged=self.purge_queue(msg.queue))
        self._store.after_commit(lambda: peer.send(reply))

    def purge_queue(self, queue: str) -> int:
        """Cancel every job waiting in ``queue``; how many there were."""
        waiting = self._dispatch.take_waiting(queue)
        for job in waiting:
            self._cancel(job)
        return len(waiting)


def _bad_filter(msg: RunsRequest) -> str | None:
    if msg.state is not None and msg.state not in _STATES:
        return f"unknown state {msg.state!r}: use one of {', '.join(_STATES)}"
    if not 1 <= msg.limit <= MAX_RUNS:
        return f"limit must be between 1 and {MAX_RUNS}, got {msg.limit}"
    return None
