"""Read Celery's task events from an app's broker in a test, as Flower does."""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from coda.testing import wait_until

__all__ = ["EventLog", "listening"]


class EventLog:
    """Every event received on the app's ``celeryev`` exchange, in order."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._connection = app.connection_for_read()
        self._receiver = app.events.Receiver(self._connection, handlers={"*": self._on_event})
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _on_event(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)

    def _run(self) -> None:
        with contextlib.suppress(Exception):  # the connection closes under it at the end
            self._receiver.capture(limit=None, timeout=None, wakeup=False)

    def start(self) -> None:
        """Consume, and return once an event sent now is seen (no fixed sleep)."""
        self._thread.start()
        probe = f"probe-{uuid.uuid4().hex}"
        with self.app.events.default_dispatcher(hostname="probe@test") as dispatcher:

            def seen() -> bool:
                dispatcher.send("task-probe", uuid=probe)
                return any(event.get("uuid") == probe for event in self.of_kind("task-probe"))

            wait_until(seen, timeout=30, interval=0.2, what="the event receiver to listen")

    def stop(self) -> None:
        self._receiver.should_stop = True
        self._connection.release()
        self._thread.join(10)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [event for event in self.events if event.get("type") == kind]

    def types_for(self, task_id: str) -> list[str]:
        """The event types of one task, in the order they arrived."""
        with self._lock:
            return [str(e["type"]) for e in self.events if e.get("uuid") == task_id]


@contextlib.contextmanager
def listening(app: Any) -> Iterator[EventLog]:
    log = EventLog(app)
    log.start()
    try:
        yield log
    finally:
        log.stop()
