"""``soft_time_limit`` and ``time_limit`` for Celery tasks run by a Coda worker.

Celery tasks run on the worker's main thread (``Spec.main_thread``), one at a
time, as in a prefork child. That is what makes the soft limit exact:

- **Soft**: a timer thread sends SIGUSR1 to the main thread
  (``signal.pthread_kill``); the handler raises ``SoftTimeLimitExceeded``
  wherever the task is, including inside ``time.sleep`` or a socket read
  (a handler that raises stops PEP 475 from retrying the system call). The
  handler raises only while the limit it was armed for is current, so a late
  signal after the task ended is ignored.
- **Hard**: a timer thread does what Celery's parent process does on a hard
  timeout (FAILURE ``TimeLimitExceeded`` in the result backend, ``on_failure``,
  ``after_return``, ``task_failure``), then ends the Coda attempt with that
  exception and replaces the worker process (``TaskInfo.fail_now``), the
  equivalent of billiard killing the child. If the process cannot run the
  timer (C code holding the GIL), the supervisor kills the worker once the
  spec's timeout has passed (the dispatcher's timeout), without the
  Celery-side report.

Limits come from the message's ``timelimit`` header ``[hard, soft]``, else the
task's attributes, else ``task_time_limit`` / ``task_soft_time_limit``.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from coda.context import TaskInfo

from .message import CeleryCall
from .reports import report_failure

__all__ = ["TimeLimits", "limits_for"]

log = logging.getLogger("coda.compat.celery")


def limits_for(app: Any, task: Any, headers: Any) -> tuple[float | None, float | None]:
    """``(hard, soft)`` in seconds for one call; None where there is no limit."""
    hard, soft = [*(headers.get("timelimit") or ()), None, None][:2]
    if hard is None:
        hard = task.time_limit if task.time_limit is not None else app.conf.task_time_limit
    if soft is None:
        soft = task.soft_time_limit
        if soft is None:
            soft = app.conf.task_soft_time_limit
    return (float(hard) if hard else None), (float(soft) if soft else None)


class TimeLimits:
    """Arms the two timers around one task; create it on the main thread."""

    def __init__(
        self, on_hard_limit: Callable[[Any, CeleryCall, BaseException], None] | None = None
    ) -> None:
        """``on_hard_limit(task, call, exc)``: after the hard limit is reported
        (the executor sends its ``task-failed`` event there)."""
        self._on_hard_limit = on_hard_limit
        self._main = threading.main_thread().ident
        self._lock = threading.Lock()
        self._current: object | None = None
        self._soft_due: object | None = None
        signal.signal(signal.SIGUSR1, self._on_sigusr1)

    @contextlib.contextmanager
    def armed(self, app: Any, task: Any, call: CeleryCall, info: TaskInfo | None) -> Iterator[None]:
        hard, soft = limits_for(app, task, call.headers)
        token = object()
        timers: list[threading.Timer] = []
        if soft is not None:
            timers.append(threading.Timer(soft, self._fire_soft, (token, soft, call)))
        if hard is not None:
            fire = (token, hard, app, task, call, info)
            timers.append(threading.Timer(hard, self._fire_hard, fire))
        with self._lock:
            self._current = token
            self._soft_due = None
        for timer in timers:
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            self._current = None  # first: a signal landing now must not raise
            for timer in timers:
                timer.cancel()

    def _on_sigusr1(self, signum: int, frame: object) -> None:
        due = self._soft_due
        if due is not None and due is self._current:
            self._soft_due = None
            raise SoftTimeLimitExceeded()

    def _fire_soft(self, token: object, soft: float, call: CeleryCall) -> None:
        with self._lock:
            if self._current is not token:
                return
            self._soft_due = token
        log.warning("soft time limit (%ss) exceeded for %s[%s]", soft, call.name, call.task_id)
        if self._main is not None:
            signal.pthread_kill(self._main, signal.SIGUSR1)

    def _fire_hard(
        self, token: object, hard: float, app: Any, task: Any, call: CeleryCall, info: Any
    ) -> None:
        with self._lock:
            if self._current is not token:
                return
            self._current = None  # the task is over, whatever the main thread does next
        log.error("hard time limit (%ss) exceeded for %s[%s]", hard, call.name, call.task_id)
        exc = TimeLimitExceeded(hard)
        try:
            report_failure(task, call, exc)
            if self._on_hard_limit is not None:
                self._on_hard_limit(task, call, exc)
        except Exception:
            log.exception("could not record the hard time limit of %s", call.task_id)
        if info is not None:
            info.fail_now(exc)
