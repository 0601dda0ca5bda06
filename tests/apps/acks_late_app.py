"""A stock Celery app with ``task_acks_late``, whose broker and result backend
are a Coda supervisor (``CODA_BROKER_URL``): the app of the broker restart
tests and of the fault harness's broker mode.

``record`` appends ``"<n> <pid>"`` to the file it is given, so a test counts
which of its tasks ran, and how many times, across worker processes and
supervisor restarts.
"""

from __future__ import annotations

import os
import time

from celery import Celery

import coda.compat.kombu  # noqa: F401  (registers coda:// with kombu)

BROKER_URL = os.environ.get("CODA_BROKER_URL", "coda://127.0.0.1:42069")

app = Celery("tests.apps.acks_late_app", broker=BROKER_URL)
app.conf.update(
    result_backend=BROKER_URL,
    result_expires=600,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_send_sent_event=False,
)


@app.task
def record(path: str, n: int, work_ms: float = 0.0) -> int:
    if work_ms:
        time.sleep(work_ms / 1000.0)
    with open(path, "a") as log:
        log.write(f"{n} {os.getpid()}\n")
    return n


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def total(values: list[int]) -> int:
    return sum(values)


def executions(path: str) -> list[int]:
    """The ``n`` of every execution recorded in ``path``, in order."""
    try:
        with open(path) as log:
            return [int(line.split()[0]) for line in log if line.strip()]
    except FileNotFoundError:
        return []
