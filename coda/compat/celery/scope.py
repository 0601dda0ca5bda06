"""Which Celery task this thread is executing, so its own republish can be caught.

``self.retry()`` (and ``autoretry_for``, which calls it) republishes the
task through ``app.send_task`` with the *same* task id, then raises
``Retry``. Inside a Coda worker that message must not reach Celery's broker:
it is the next attempt of the current Coda job. The executor opens a scope
for the running task; the ``send_task`` hook sees a publish carrying the
scope's task id and keeps the finished message here instead. The job is
then retried through the supervisor with that message as its arguments.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from .message import CeleryMessage

__all__ = ["ExecScope", "current_scope", "scope_var"]


@dataclass(slots=True)
class ExecScope:
    task_id: str
    captured: CeleryMessage | None = None

    def capture(self, message: CeleryMessage) -> None:
        self.captured = message


scope_var: ContextVar[ExecScope | None] = ContextVar("coda_celery_scope", default=None)


def current_scope() -> ExecScope | None:
    return scope_var.get()
