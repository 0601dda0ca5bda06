"""A Celery app with the settings real apps set (issue 13, "What must work" 3).

Broker and backend are the suite's Redis, with the session's key prefix
(``tests/compat/conftest.py``). Every setting below is one a test of
``tests/compat/test_settings.py`` checks on Coda workers: task events for
Flower (``task_send_sent_event``, ``worker_send_task_events``), ``STARTED``
(``task_track_started``), extended results, ack and reject policies, routing
(``task_routes``, a renamed ``task_default_queue``), ``task_annotations``,
rate limits and ``result_expires``.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, Task

from tests.apps.journal import lines, record  # noqa: F401  (tests read lines)
from tests.redis_keys import DEFAULT_URL

REDIS_URL = os.environ.get("CODA_TEST_REDIS_URL", DEFAULT_URL)
PREFIX = os.environ.get("CODA_TEST_CELERY_PREFIX", "coda-test:")
HERE = "tests.apps.celery_settings"
RESULT_EXPIRES = 321

app = Celery(HERE, broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="settings-default",  # Coda's "default" all the same
    task_routes={f"{HERE}.routed": {"queue": "settings-routed"}},
    task_send_sent_event=True,
    worker_send_task_events=True,
    task_track_started=True,
    result_extended=True,
    task_acks_on_failure_or_timeout=False,
    task_reject_on_worker_lost=True,
    task_annotations={f"{HERE}.annotated": {"rate_limit": "60/m"}},
    task_default_rate_limit="120/m",
    result_expires=RESULT_EXPIRES,
)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def stamp(path: str) -> float:
    """Records when it ran (rate limits are measured on these)."""
    now = time.time()
    record(path, f"at {now}")
    return now


@app.task
def annotated(path: str) -> float:
    now = time.time()
    record(path, f"at {now}")
    return now


@app.task(bind=True, max_retries=3)
def retry_once(self: Task, path: str) -> int:
    runs = record(path, "run")
    if runs == 1:
        raise self.retry(countdown=0.1, exc=ConnectionError("first run"))
    return runs


@app.task
def wait_for(path: str, release: str) -> int:
    """Writes its pid, then waits until ``release`` exists."""
    record(path, f"pid {os.getpid()}")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()


@app.task(bind=True, acks_late=True)
def late_wait(self: Task, path: str, release: str) -> dict[str, Any]:
    """``acks_late``: killed mid-run, it must come back redelivered."""
    record(path, f"pid {os.getpid()}")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"redelivered": self.request.delivery_info.get("redelivered")}


@app.task(acks_late=True)
def late_fail(path: str) -> None:
    record(path, "run")
    raise KeyError("for good")


@app.task
def routed() -> str:
    from celery import current_task

    return str(current_task.request.delivery_info.get("routing_key"))
