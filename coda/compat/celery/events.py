"""Celery's task events for the tasks Coda runs, so Flower and ``celery events`` see them.

Two sources, both sent to the app's own broker (its ``celeryev`` exchange,
whatever the broker: ``coda://``, Redis, RabbitMQ), where Celery's event
consumers read them:

- **``task-sent``** (``task_send_sent_event``): Celery publishes it through
  the producer it was given, right after the task message. A call routed to
  Coda (and ``self.retry()`` inside a Coda worker) is published into a
  ``MessageProducer``, which hands such non-task messages to
  ``EventForwarder``: they go to the broker as Celery would have sent them,
  and never take the place of the task message.
- **``task-received``, ``-started``, ``-succeeded``, ``-failed``,
  ``-retried``, ``-rejected``, ``-revoked``** (``worker_send_task_events``,
  a Celery worker's ``-E``): sent by the Coda worker running the task
  (``TaskEvents``), with the fields a Celery worker's request sends. The
  ``hostname`` of these events is the Coda worker's (``coda-<pid>@host``),
  as ``self.request.hostname`` says. ``task-received`` is sent when the
  worker takes the task, just before ``task-started``: the supervisor, not
  the worker, holds a task until then.

An event that cannot be sent (the broker is down) is logged and dropped, as
Celery's dispatcher does without ``buffer_while_offline``: a task never
fails because its event was lost.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from celery.events.event import get_exchange
from celery.utils.saferepr import saferepr

from .message import CeleryCall

__all__ = ["EventForwarder", "TaskEvents", "is_event"]

log = logging.getLogger("coda.compat.celery")


def is_event(headers: dict[str, Any]) -> bool:
    """A message that is not a protocol-v2 task message (an event Celery
    publishes through the same producer)."""
    return "task" not in headers or "id" not in headers


class EventForwarder:
    """Publishes the events given to a ``MessageProducer`` to the app's broker."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __call__(
        self,
        body: Any,
        exchange: str,
        routing_key: str | None,
        headers: dict[str, Any],
        serializer: str | None,
    ) -> None:
        try:
            with self.app.producer_or_acquire() as producer:
                declared = get_exchange(producer.connection, name=exchange or "celeryev")
                producer.publish(
                    body,
                    exchange=declared.name,
                    routing_key=routing_key,
                    declare=[declared],
                    serializer=serializer or self.app.conf.event_serializer,
                    headers=headers,
                    delivery_mode=1,
                    retry=True,
                    retry_policy={"max_retries": 3},
                )
        except Exception as exc:
            log.warning("could not send a Celery event to %s: %r", exchange, exc)


class TaskEvents:
    """The task events of one Coda worker, when the app enables them."""

    def __init__(self, app: Any, hostname: str) -> None:
        self.app = app
        self.hostname = hostname
        self.enabled = bool(app.conf.worker_send_task_events)
        self._dispatcher: Any = None
        self._lock = threading.Lock()

    def _send(self, task: Any, type_: str, task_id: str, **fields: Any) -> None:
        if not self.enabled or not getattr(task, "send_events", True):
            return
        with self._lock:
            try:
                if self._dispatcher is None:
                    self._dispatcher = self.app.events.Dispatcher(
                        self.app.connection_for_write(), hostname=self.hostname, enabled=True
                    )
                self._dispatcher.send(type_, uuid=task_id, retry=True, **fields)
            except Exception as exc:
                log.warning("could not send %s for %s: %r", type_, task_id, exc)
                self._close()

    def _close(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            try:
                dispatcher.close()
                dispatcher.connection.release()
            except Exception:
                log.debug("closing the event dispatcher failed", exc_info=True)

    def received(self, task: Any, call: CeleryCall) -> None:
        headers = call.headers
        self._send(
            task,
            "task-received",
            call.task_id,
            name=call.name,
            args=headers.get("argsrepr") or saferepr(call.args),
            kwargs=headers.get("kwargsrepr") or saferepr(call.kwargs),
            root_id=headers.get("root_id") or call.task_id,
            parent_id=headers.get("parent_id"),
            retries=headers.get("retries") or 0,
            eta=headers.get("eta"),
            expires=headers.get("expires"),
        )

    def started(self, task: Any, call: CeleryCall) -> None:
        self._send(task, "task-started", call.task_id)

    def succeeded(self, task: Any, call: CeleryCall, retval: Any, runtime: float) -> None:
        self._send(task, "task-succeeded", call.task_id, result=saferepr(retval), runtime=runtime)

    def failed(self, task: Any, call: CeleryCall, exc: BaseException, traceback: str) -> None:
        self._send(task, "task-failed", call.task_id, exception=saferepr(exc), traceback=traceback)

    def retried(self, task: Any, call: CeleryCall, exc: Any, traceback: str) -> None:
        self._send(task, "task-retried", call.task_id, exception=saferepr(exc), traceback=traceback)

    def rejected(self, task: Any, call: CeleryCall, requeue: bool) -> None:
        self._send(task, "task-rejected", call.task_id, requeue=requeue)

    def revoked(self, task: Any, call: CeleryCall, *, terminated: bool, expired: bool) -> None:
        self._send(
            task,
            "task-revoked",
            call.task_id,
            terminated=terminated,
            signum=None,
            expired=expired,
        )
