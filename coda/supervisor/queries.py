"""What an operator asks of the engine: the runs, one run's steps, and
emptying a queue (``coda runs``, ``coda show``, ``coda purge``, the dashboard).

Each answer merges the store's record with the engine's live jobs, which are
newer (a running step is not written until it finishes). A bad filter or an
unknown run gets one line that says what is wrong; nothing changes.

``list_runs`` and ``run`` are the answers as values (raising
``RequestRefusedError``), which the dashboard calls in-process; ``runs`` and
``show`` send them to a protocol peer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..errors import RequestRefusedError
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
from .dispatch import Dispatcher
from .jobs import Job, JobState
from .peers import Peer
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

    def list_runs(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[JobView]:
        """Root runs, newest first; ``RequestRefusedError("bad_filter")``
        for a state that does not exist or a limit out of range."""
        problem = _bad_filter(state, limit)
        if problem is not None:
            raise RequestRefusedError("bad_filter", problem)
        found = self._store.list_runs(state=state, name=name, since=since, limit=limit)
        return [view(self._live.get(job.id, job)) for job in found]

    def run(self, run_id: str) -> tuple[JobView, list[JobView]]:
        """A run and every job it spawned, oldest first;
        ``RequestRefusedError("not_found")`` for an unknown run."""
        run = self._live.get(run_id) or self._store.get_job(run_id)
        if run is None:
            message = f"no run {run_id!r}: never submitted here, or expired"
            raise RequestRefusedError("not_found", message)
        steps = {job.id: job for job in self._store.children(run.id)}
        steps.update((j.id, j) for j in self._live.values() if j.parent_run == run.id)
        ordered = sorted(steps.values(), key=lambda job: job.created_at)
        return view(run), [view(j) for j in ordered]

    def runs(self, peer: Peer, msg: RunsRequest) -> None:
        try:
            runs = self.list_runs(state=msg.state, name=msg.name, since=msg.since, limit=msg.limit)
        except RequestRefusedError as exc:
            peer.send(Error(code=exc.code, message=exc.message, req_id=msg.req_id))
            return
        peer.send(RunsReply(req_id=msg.req_id, runs=runs))

    def show(self, peer: Peer, msg: ShowRequest) -> None:
        try:
            run, steps = self.run(msg.run_id)
        except RequestRefusedError as exc:
            peer.send(Error(code=exc.code, message=exc.message, req_id=msg.req_id))
            return
        peer.send(ShowReply(req_id=msg.req_id, run=run, steps=steps))

    def purge(self, peer: Peer, msg: PurgeQueue) -> None:
        reply = PurgeReply(req_id=msg.req_id, queue=msg.queue, purged=self.purge_queue(msg.queue))
        self._store.after_commit(lambda: peer.send(reply))

    def purge_queue(self, queue: str) -> int:
        """Cancel every job waiting in ``queue``; how many there were."""
        waiting = self._dispatch.take_waiting(queue)
        for job in waiting:
            self._cancel(job)
        return len(waiting)


def _bad_filter(state: str | None, limit: int) -> str | None:
    if state is not None and state not in _STATES:
        return f"unknown state {state!r}: use one of {', '.join(_STATES)}"
    if not 1 <= limit <= MAX_RUNS:
        return f"limit must be between 1 and {MAX_RUNS}, got {limit}"
    return None
