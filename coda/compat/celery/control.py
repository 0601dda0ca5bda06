"""Celery's remote control for the tasks Coda runs: revoke, purge, inspect.

The supervisor's Celery node (``coda.broker.control``) does the work: it
cancels Coda jobs for ``revoke``, purges the Coda jobs of a queue, and
answers ``inspect``. Two things of it live on the Celery side:

- **The revoked report.** A job the node cancelled is reported revoked by
  the internal task ``REVOKED_TASK``, run by a Coda worker (it has the app,
  so the app's result backend, signals and events): REVOKED in the backend
  unless a result is already there (as Celery's ``_revoke``: a task that
  started elsewhere keeps its state, unless it was terminated),
  ``task_revoked`` and ``task-revoked``.
- **install() hooks on ``app.control``.** An app routed with ``install()``
  may talk to another broker (Redis, RabbitMQ), whose broadcasts never reach
  the supervisor. So ``broadcast`` (``revoke``, ``inspect``, ``ping``...)
  also sends the command to the supervisor (``ControlRequest``) and adds its
  node's answer to the replies; ``purge`` also purges the Coda jobs of the
  app's queues, and counts them. On a ``coda://`` broker the node has seen
  the broadcast already: its answer is not added twice, and a second revoke
  of a job already cancelled does nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery import states

from coda import registry
from coda._client_common import default_address
from coda.broker.control import REVOKED_TASK
from coda.broker.messages import ControlReply, ControlRequest
from coda.decorators import DEFAULT_QUEUE, Spec
from coda.errors import CodaError
from coda.retry import RetryPolicy

from .message import CeleryCall, CeleryMessage
from .reports import report_revoked

__all__ = ["ControlHooks", "register_control_units"]

log = logging.getLogger("coda.compat.celery")

CONTROL_TIMEOUT = 10.0  # seconds for the supervisor's node to answer

# Celery's _revoke leaves these alone unless it terminated the task itself
_NOT_YET_RUN = frozenset({states.PENDING, states.RECEIVED, states.RETRY, states.REJECTED})


def _revoked_entry(app: Any, executor: Any) -> Callable[..., None]:
    def revoked(envelope: dict[str, Any], terminated: bool) -> None:
        message = CeleryMessage.from_envelope(envelope)
        task = app.tasks.get(message.name)
        if task is None:
            return
        state = task.backend.get_state(message.task_id)
        if state in states.READY_STATES or (not terminated and state not in _NOT_YET_RUN):
            return
        call = CeleryCall(
            name=message.name,
            task_id=message.task_id,
            args=[],
            kwargs={},
            headers=message.headers,
            properties=message.properties,
            message=message,
        )
        report_revoked(task, call, terminated=terminated)
        if executor is not None:
            executor.events.revoked(task, call, terminated=terminated, expired=False)

    revoked.__qualname__ = revoked.__name__ = "celery:revoked"
    return revoked


def register_control_units(app: Any, executor: Any) -> None:
    """The revoked report (registered in every role; it runs on workers)."""
    registry.register(
        Spec(
            name=REVOKED_TASK,
            kind="task",
            fn=_revoked_entry(app, executor),
            is_async=False,
            queue=DEFAULT_QUEUE,  # the node submits it to the revoked job's queue
            retry=RetryPolicy(max_retries=0),
            serializer="json",
            main_thread=True,
        )
    )


class ControlHooks:
    """``app.control.broadcast`` and ``app.control.purge`` of a routed app."""

    def __init__(self, app: Any, router: Any) -> None:
        self.app = app
        self.router = router
        self._link: Any = None
        self._lock = threading.Lock()
        control = app.control
        self._broadcast = control.__dict__.get("broadcast") or control.broadcast
        self._purge = control.__dict__.get("purge") or control.purge
        self._broadcast = getattr(self._broadcast, "original", self._broadcast)
        self._purge = getattr(self._purge, "original", self._purge)

    def install(self) -> None:
        control = self.app.control
        control.broadcast = _Hooked(self._broadcast, self.broadcast)
        control.purge = _Hooked(self._purge, self.purge)

    def uninstall(self) -> None:
        control = self.app.control
        for name in ("broadcast", "purge"):
            if isinstance(control.__dict__.get(name), _Hooked):
                delattr(control, name)
        self.close()

    def broadcast(
        self,
        command: str,
        arguments: dict[str, Any] | None = None,
        destination: Any = None,
        connection: Any = None,
        reply: bool = False,
        timeout: float = 1.0,
        limit: int | None = None,
        callback: Any = None,
        channel: Any = None,
        pattern: str | None = None,
        matcher: str | None = None,
        **extra_kwargs: Any,
    ) -> Any:
        replies = self._broadcast(
            command,
            arguments=arguments,
            destination=destination,
            connection=connection,
            reply=reply,
            timeout=timeout,
            limit=limit,
            callback=callback,
            channel=channel,
            pattern=pattern,
            matcher=matcher,
            **extra_kwargs,
        )
        answer = self._ask(
            command,
            dict(arguments or {}, **extra_kwargs),
            destination=list(destination) if destination else None,
            pattern=pattern,
            matcher=matcher,
        )
        if not reply or answer is None:
            return replies
        replies = list(replies or [])
        if not any(answer.node in one for one in replies) and answer.reply is not None:
            replies.append({answer.node: answer.reply})
            if callback is not None:
                callback({answer.node: answer.reply})
        return replies

    def purge(self, connection: Any = None) -> int:
        count = int(self._purge(connection=connection) or 0)
        queues = sorted(self.app.amqp.queues.keys())
        answer = self._ask("purge", {"queues": queues})
        if answer is not None and isinstance(answer.reply, dict):
            count += int(answer.reply.get("purged") or 0)
        return count

    def _ask(self, method: str, arguments: dict[str, Any], **where: Any) -> ControlReply | None:
        """The supervisor node's answer; None (logged) when it cannot be asked."""
        with self._lock:
            try:
                link = self._connected()
                request = ControlRequest(link.next_id(), method, arguments, **where)
                reply = link.call(request, timeout=CONTROL_TIMEOUT)
            except (CodaError, OSError) as exc:
                log.warning("Coda supervisor not reached for %r: %s", method, exc)
                self._drop()
                return None
        if not isinstance(reply, ControlReply):
            log.warning("Coda supervisor refused %r: %s", method, reply)
            return None
        return reply

    def _connected(self) -> Any:
        """A broker link to the supervisor (it reconnects by itself when used)."""
        from coda.compat.kombu.link import Link

        if self._link is None:
            address = default_address(self.router.supervisor)
            self._link = Link(address, token=self.router.token or "", connect_timeout=5.0)
        return self._link

    def _drop(self) -> None:
        link, self._link = self._link, None
        if link is not None:
            try:
                link.close()
            except Exception:
                log.debug("closing the control link failed", exc_info=True)

    def close(self) -> None:
        with self._lock:
            self._drop()


class _Hooked:
    """A hooked method that still knows the original (so installing twice
    never wraps a wrapper)."""

    def __init__(self, original: Callable[..., Any], hook: Callable[..., Any]) -> None:
        self.original = original
        self.hook = hook

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.hook(*args, **kwargs)
