"""Cancelling a run: the run, everything it spawned, and what stops each.

A cancel is a request the engine carries out at once where it can and
through the worker where it must:

- a job that has not started (queued, held back for a retry or an ETA) is
  cancelled on the spot: it never runs;
- a workflow run and an async task are stopped by their worker
  (``StopJob``): the coroutine gets ``asyncio.CancelledError`` at its current
  ``await``, so its ``try/finally`` runs, and the worker answers as usual;
  a task the worker holds back (prefetched, not started) is dropped there;
- a sync task that is running cannot be interrupted: it finishes, unless
  ``terminate`` asks for its worker process to be replaced (as Celery's
  ``revoke(terminate=True)`` does).

Children are cancelled first (those on the workflow's own worker stop
before its ``finally`` runs; those on other workers at about the same
time). Whatever way a cancelled job ends, it ends ``cancelled``: its outcome
is ``coda.Cancelled``, and it is never rerun.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from .._outcome import CANCELLED_TYPE
from ..errors import CodaError
from ..messages import Failure, StopJob
from .dispatch import Dispatcher, NameInfo
from .jobs import Job, JobState

__all__ = ["CANCELLED", "Cancellations"]

CANCELLED = Failure(type_name=CANCELLED_TYPE, message="cancelled on request")


class Cancellations:
    def __init__(
        self,
        live: Mapping[str, Job],
        dispatch: Dispatcher,
        lookup: Callable[[str], NameInfo],
        *,
        finish: Callable[[Job], None],
        replace_worker: Callable[[int], None],
    ) -> None:
        self._live = live
        self._dispatch = dispatch
        self._lookup = lookup
        self._finish = finish
        self._replace_worker = replace_worker

    def cancel(self, job: Job, terminate: bool = False) -> None:
        """Cancel ``job`` and its children; see the module docstring."""
        if job.state.finished or job.cancelling:
            return
        job.cancelling = True
        for child in [other for other in self._live.values() if other.parent_run == job.id]:
            self.cancel(child, terminate)
        worker = None if job.worker is None else self._dispatch.workers.get(job.worker)
        if job.state is not JobState.RUNNING or worker is None:
            if job.state is JobState.QUEUED:
                self._dispatch.withdraw(job)
            self._finish(job)  # it never starts
        elif self._interruptible(job, worker.held):
            worker.peer.send(StopJob(job_id=job.id))
        elif terminate:
            self._dispatch.release(worker, job)
            self._finish(job)
            self._replace_worker(worker.id)
        # else: a sync task running now; it ends cancelled when it finishes

    def _interruptible(self, job: Job, held_back: set[str]) -> bool:
        if job.kind == "workflow" or job.id in held_back:
            return True
        try:
            return self._lookup(job.name).is_async
        except CodaError:  # no longer registered: assume the worst, a sync task
            return False
