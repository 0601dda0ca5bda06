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
from ..errors import CodaError, RequestRefusedError
from ..messages import CancelReply, CancelRun, Error, Failure, StopJob
from .dispatch import Dispatcher
from .jobs import Job, JobState
from .peers import NameInfo, Peer

__all__ = ["CANCELLED", "Cancellations"]

CANCELLED = Failure(type_name=CANCELLED_TYPE, message="cancelled on request")


class Cancellations:
    def __init__(
        self,
        live: Mapping[str, Job],
        dispatch: Dispatcher,
        lookup: Callable[[str], NameInfo],
        *,
        find: Callable[[str], Job | None],
        after_commit: Callable[[Callable[[], None]], None],
        finish: Callable[[Job], None],
        replace_worker: Callable[[int], None],
    ) -> None:
        self._live = live
        self._dispatch = dispatch
        self._lookup = lookup
        self._find = find
        self._after_commit = after_commit
        self._finish = finish
        self._replace_worker = replace_worker
        # in a fleet: cancel a job held elsewhere, answer(state) later (fleet.py)
        self.elsewhere: Callable[[Job, bool, Callable[[str | None], None]], None] | None = None

    def cancellable(self, run_id: str) -> Job:
        """The run to cancel; ``RequestRefusedError`` (``not_found``,
        ``already_finished``) for a run that is unknown or has ended."""
        job = self._find(run_id)
        if job is None:
            message = f"cannot cancel run {run_id!r}: never submitted here, or expired"
            raise RequestRefusedError("not_found", message)
        if job.state.finished:
            message = (
                f"cannot cancel run {run_id!r}: it has already {job.state.value}; "
                "nothing was changed"
            )
            raise RequestRefusedError("already_finished", message)
        return job

    def begin(self, job: Job, terminate: bool, answer: Callable[[str | None], None]) -> None:
        """Cancel ``job``; ``answer(state)`` once known (at once here, later
        for a job another supervisor of the fleet holds; None: it had ended)."""
        if self.elsewhere is not None and job.id not in self._live:
            self.elsewhere(job, terminate, answer)
            return
        self.cancel(job, terminate)
        answer(_state(job))

    def begin_durably(
        self,
        job: Job,
        terminate: bool,
        answer: Callable[[str | RequestRefusedError], None],
    ) -> None:
        """Cancel ``job``; ``answer(state)`` once the cancel is durable, or
        ``answer(refusal)`` if the run ended meanwhile (nothing changed).
        What a client's ``CancelRun`` and the dashboard's cancel both do."""

        def known(state: str | None) -> None:
            if state is None:
                message = f"cannot cancel run {job.id!r}: it has already ended; nothing was changed"
                answer(RequestRefusedError("already_finished", message))
            else:
                self._after_commit(lambda: answer(state))

        self.begin(job, terminate, known)

    def request(self, peer: Peer, msg: CancelRun) -> None:
        """A client's ``CancelRun``: answered once the cancel is durable; a
        run that is unknown or has ended is refused, and nothing changes."""

        def answer(outcome: str | RequestRefusedError) -> None:
            if isinstance(outcome, RequestRefusedError):
                peer.send(Error(code=outcome.code, message=outcome.message, req_id=msg.req_id))
            else:
                peer.send(CancelReply(req_id=msg.req_id, run_id=msg.run_id, state=outcome))

        try:
            job = self.cancellable(msg.run_id)
        except RequestRefusedError as exc:
            answer(exc)
            return
        self.begin_durably(job, msg.terminate, answer)

    def cancel_run(self, run_id: str, terminate: bool = False) -> str | None:
        """Cancel a run by id; its state after the request, or None if it is
        unknown or has ended."""
        job = self._find(run_id)
        if job is None or job.state.finished:
            return None
        if self.elsewhere is not None and job.id not in self._live:
            self.elsewhere(job, terminate, lambda state: None)
            return "cancelling"
        self.cancel(job, terminate)
        return _state(job)

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


def _state(job: Job) -> str:
    return "cancelled" if job.state.finished else "cancelling"
