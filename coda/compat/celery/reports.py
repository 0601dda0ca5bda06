"""Outcomes a Celery worker's parent process records, not the tracer.

A task that never returned (hard time limit, dead process without
``acks_late``), a rejected message and an expired one are reported by
Celery's ``worker/request.py`` rather than by ``app/trace.py``. A Coda worker
has no parent process doing that, so these functions do it with the same
effects: the result backend's meta, the task's hooks and the signals.
"""

from __future__ import annotations

import signal
from typing import Any

from billiard.einfo import ExceptionInfo
from celery import signals, states
from celery.app.task import Context
from celery.app.trace import task_has_custom

from .message import CeleryCall

__all__ = ["context_for", "report_failure", "report_revoked"]


def context_for(call: CeleryCall, hostname: str = "", redelivered: bool = False) -> Context:
    return Context(call.request(hostname, redelivered), args=call.args, kwargs=call.kwargs)


def report_failure(task: Any, call: CeleryCall, exc: BaseException, *, hooks: bool = True) -> None:
    """FAILURE in the backend, then ``on_failure``, ``after_return`` and ``task_failure``."""
    context = context_for(call)
    task.backend.mark_as_failure(call.task_id, exc, request=context)
    try:
        raise exc
    except BaseException:
        einfo = ExceptionInfo()
    task.request_stack.push(context)
    try:
        if hooks:
            task.on_failure(exc, call.task_id, call.args, call.kwargs, einfo)
            if task_has_custom(task, "after_return"):
                task.after_return(states.FAILURE, exc, call.task_id, call.args, call.kwargs, None)
        signals.task_failure.send(
            sender=task,
            task_id=call.task_id,
            exception=exc,
            args=call.args,
            kwargs=call.kwargs,
            traceback=einfo.tb,
            einfo=einfo,
        )
    finally:
        task.request_stack.pop()


def report_revoked(
    task: Any, call: CeleryCall, *, expired: bool = False, terminated: bool = False
) -> None:
    """REVOKED in the backend and ``task_revoked``, as a Celery worker reports
    a message past ``expires``, a revoked one, or one it terminated."""
    context = context_for(call)
    reason = "expired" if expired else "terminated" if terminated else "revoked"
    task.backend.mark_as_revoked(call.task_id, reason, request=context)
    signals.task_revoked.send(
        sender=task,
        request=context,
        terminated=terminated,
        signum=signal.SIGTERM if terminated else None,
        expired=expired,
    )
