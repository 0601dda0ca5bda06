"""Execute an adopted Celery task in a Coda worker, with Celery's semantics.

Each task runs through Celery's own tracer (``celery.app.trace.build_tracer``,
as a prefork child does after ``setup_worker_optimizations``), so
``self.request``, ``bind``, ``Retry``/``Reject``/``Ignore``, ``autoretry_for``,
``on_success``/``on_failure``/``on_retry``/``after_return``, the ``task_*``
signals, result storage in the app's backend and chain/link dispatch behave
as in Celery. Around the tracer this module does what Celery's worker does:

- ``expires``: a message past it is not run; REVOKED is stored and
  ``task_revoked(expired=True)`` sent (the Coda job fails with
  ``TaskRevokedError``).
- redelivery after the Coda worker died: with ``acks_late`` the task runs
  again (``delivery_info.redelivered`` is True, so
  ``worker_deduplicate_successful_tasks`` works); without it Celery would
  have acked the message already, so ``WorkerLostError`` is stored and the
  task is not rerun.
- task events (``events``): ``task-received``/``-started`` and the outcome's
  event, when the app sets ``worker_send_task_events``.
- ``Reject(requeue=True)``: the job is handed back unchanged
  (``RequeueRequested``) and its next delivery has ``redelivered`` True, as
  a broker's requeue; the supervisor backs off a task that keeps rejecting
  (``coda.supervisor.requeues``). Without ``acks_late`` too: a Celery worker
  would have acked the message before the task ran, and the reject would lose it.
- time limits (``limits``), and ``self.retry()``: the republished message is
  captured (``scope``) and becomes the next Coda attempt
  (``coda.errors.RetryRequested`` with the new message as arguments and its
  ``eta`` as the delay), so retries go through the supervisor, never the broker.

The value returned (or exception raised) is what the Coda job records, so
``spawn_task`` callers and Coda clients see the same outcome as the backend.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from billiard.exceptions import WorkerLostError
from celery import states
from celery.app.trace import build_tracer, setup_worker_optimizations
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded, TaskRevokedError
from kombu.serialization import prepare_accept_content

from coda.context import TaskInfo, task_info
from coda.errors import RequeueRequested, RetryRequested

from .events import TaskEvents
from .limits import TimeLimits
from .message import ENVELOPE, CeleryCall, parse_job_args
from .reports import report_failure, report_revoked
from .scope import ExecScope, scope_var

__all__ = ["CeleryExecutor"]

Tracer = Callable[[str, list[Any], dict[str, Any], dict[str, Any]], Any]


class CeleryExecutor:
    """Runs one Celery task at a time on the calling (main) thread."""

    def __init__(self, app: Any, hostname: str | None = None) -> None:
        self.app = app
        self.hostname = hostname or f"coda-{os.getpid()}@{socket.gethostname()}"
        setup_worker_optimizations(app, self.hostname)
        self.accept = prepare_accept_content(app.conf.accept_content)
        self.events = TaskEvents(app, self.hostname)
        self.limits = TimeLimits(on_hard_limit=self._hard_limit_event)
        self._tracers: dict[str, Tracer] = {}

    def run(self, name: str, **job_args: Any) -> Any:
        """The Coda task function of every adopted task (see ``message``)."""
        task = self.app.tasks[name]
        try:
            call = parse_job_args(name, job_args, self.accept)
        except Exception as exc:  # refused or malformed: say so where the caller looks
            _record_unreadable(task, job_args, exc)
            raise
        info = task_info()
        lost = bool(info is not None and info.redelivered)
        self.events.received(task, call)
        expires = call.expires
        if expires is not None and time.time() > expires:
            report_revoked(task, call, expired=True)
            self.events.revoked(task, call, terminated=False, expired=True)
            raise TaskRevokedError("expired")
        if lost and not (task.acks_late or self.app.conf.task_acks_late):
            error = WorkerLostError("the Coda worker running this task died")
            report_failure(task, call, error)
            self.events.failed(task, call, error, "")
            raise error
        requeued = bool(info is not None and info.requeued)
        self.events.started(task, call)
        return self._trace(task, call, info, lost or requeued)

    def _trace(self, task: Any, call: CeleryCall, info: TaskInfo | None, redelivered: bool) -> Any:
        scope = ExecScope(call.task_id)
        token = scope_var.set(scope)
        traced = None
        try:
            with self.limits.armed(self.app, task, call, info):
                traced = self._tracer(call.name, task)(
                    call.task_id, call.args, call.kwargs, call.request(self.hostname, redelivered)
                )
        except SoftTimeLimitExceeded:
            if traced is None:  # landed outside the task body: nothing else ran
                raise
        finally:
            scope_var.reset(token)
        retval, trace_info = traced[0], traced[1]
        self._send_outcome(task, call, traced, scope)
        return self._outcome(task, call, retval, trace_info, scope)

    def _tracer(self, name: str, task: Any) -> Tracer:
        tracer = self._tracers.get(name)
        if tracer is None:
            tracer = build_tracer(name, task, self.app.loader, self.hostname, app=self.app)
            self._tracers[name] = tracer
        return tracer

    def _send_outcome(self, task: Any, call: CeleryCall, traced: Any, scope: ExecScope) -> None:
        """The event a Celery worker sends for this outcome (``worker/request.py``)."""
        retval, trace_info, runtime = traced[0], traced[1], traced[2]
        events = self.events
        if trace_info is None:
            events.succeeded(task, call, retval, runtime)
            return
        traceback = str(getattr(retval, "traceback", "") or "")
        state, exc = trace_info.state, trace_info.retval
        if scope.captured is not None or state == states.RETRY:
            events.retried(task, call, exc.exc if isinstance(exc, Retry) else exc, traceback)
        elif state == states.REJECTED and isinstance(exc, Reject):
            events.rejected(task, call, bool(exc.requeue))
        elif state == states.FAILURE:
            events.failed(task, call, exc, traceback)

    def _hard_limit_event(self, task: Any, call: CeleryCall, exc: BaseException) -> None:
        self.events.failed(task, call, exc, "")

    def _outcome(
        self, task: Any, call: CeleryCall, retval: Any, trace_info: Any, scope: ExecScope
    ) -> Any:
        if scope.captured is not None:  # self.retry() published the next attempt
            message = scope.captured
            delay = 0.0 if message.eta is None else message.eta - time.time()
            cause = trace_info.retval if trace_info is not None else None
            if isinstance(cause, Retry) and isinstance(cause.exc, BaseException):
                cause = cause.exc
            raise RetryRequested(delay, args=message.to_job_args(), cause=cause)
        if trace_info is None:
            return retval
        state, exc = trace_info.state, trace_info.retval
        if state == states.IGNORED:
            return None
        if state == states.REJECTED and isinstance(exc, Reject):
            if exc.requeue:
                raise RequeueRequested(cause=exc)
            report_failure(task, call, exc, hooks=False)
        if isinstance(exc, BaseException):
            raise exc
        raise RuntimeError(f"task {call.name} ended in state {state}: {exc!r}")


def _record_unreadable(task: Any, job_args: dict[str, Any], exc: BaseException) -> None:
    """FAILURE for a message whose body cannot be read (e.g. a content type not in
    ``accept_content``): Celery leaves such a task PENDING forever, Coda reports it."""
    headers = (job_args.get(ENVELOPE) or {}).get("headers") or {}
    task_id = headers.get("id") if isinstance(headers, dict) else None
    if isinstance(task_id, str):
        task.backend.mark_as_failure(task_id, exc)
