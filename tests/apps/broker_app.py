"""A stock Celery app whose broker and result backend are a Coda supervisor.

``CODA_BROKER_URL`` (``coda://host:port``) names the supervisor; the result
backend is the same address unless ``CODA_RESULT_BACKEND`` says otherwise.
The only Coda-specific line is the import that registers the ``coda://``
scheme with kombu. A ``redis://`` URL instead runs the same app on Redis, the
reference the tests compare with, its keys prefixed with
``CODA_TEST_CELERY_PREFIX`` (tests/redis_keys.py). Tasks record what happened
by appending lines to a file the test names (``path``), so a test can count
executions across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, Task
from celery.exceptions import Reject

import coda.compat.kombu  # noqa: F401  (registers coda:// with kombu)
from tests.apps.journal import lines, record  # noqa: F401  (tests read lines)

BROKER_URL = os.environ.get("CODA_BROKER_URL", "coda://127.0.0.1:42069")

app = Celery("tests.apps.broker_app", broker=BROKER_URL)
app.conf.update(
    result_backend=os.environ.get("CODA_RESULT_BACKEND", BROKER_URL),
    result_expires=600,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_send_sent_event=False,
    # the -E of the Coda workers (the Flower test turns it on)
    worker_send_task_events=os.environ.get("CODA_TEST_TASK_EVENTS") == "1",
)
if BROKER_URL.startswith("redis://"):
    _prefix = {"global_keyprefix": os.environ["CODA_TEST_CELERY_PREFIX"]}
    app.conf.update(broker_transport_options=_prefix, result_backend_transport_options=_prefix)


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def mul(x: int, y: int) -> int:
    return x * y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


@app.task
def echo(value: Any, path: str | None = None, label: str = "echo") -> Any:
    record(path, label)
    return value


@app.task(bind=True)
def where(self: Task) -> str:
    """The node that ran it: ``coda-<pid>@host`` in a Coda worker."""
    return str(self.request.hostname)


@app.task
def boom(message: str = "boom") -> None:
    raise KeyError(message)


@app.task(bind=True, max_retries=5)
def flaky(self: Task, path: str, failures: int) -> int:
    """Fails ``failures`` times with ``self.retry(countdown=0.2)``, then succeeds."""
    attempt = record(path, "attempt")
    if attempt <= failures:
        raise self.retry(countdown=0.2, exc=RuntimeError(f"attempt {attempt}"))
    return attempt


@app.task(autoretry_for=(ValueError,), max_retries=3, retry_kwargs={"countdown": 0.1})
def auto_flaky(path: str, failures: int) -> int:
    attempt = record(path, "attempt")
    if attempt <= failures:
        raise ValueError(f"attempt {attempt}")
    return attempt


@app.task(bind=True, acks_late=True)
def slow_once(self: Task, path: str, seconds: float) -> int:
    """Records its pid and whether the message was redelivered at start, and
    ``done`` at the end: the victim of the kill test."""
    redelivered = bool(self.request.delivery_info.get("redelivered"))
    record(path, f"start {os.getpid()} redelivered={redelivered}")
    time.sleep(seconds)
    record(path, "done")
    return os.getpid()


@app.task(bind=True, acks_late=True)
def reject_once(self: Task, path: str) -> str:
    """Celery's requeue pattern: reject the first delivery, run the redelivered one."""
    redelivered = bool(self.request.delivery_info.get("redelivered"))
    record(path, f"run redelivered={redelivered}")
    if not redelivered:
        raise Reject("not on the first delivery", requeue=True)
    return "ran on the redelivery"
