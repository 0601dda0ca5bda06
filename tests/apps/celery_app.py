"""A Celery app the compat tests run on both fleets (Celery workers and Coda workers).

Broker and result backend are the Redis at ``CODA_TEST_REDIS_URL``; every key
is prefixed with ``CODA_TEST_CELERY_PREFIX`` so concurrent test sessions (and
xdist workers) never see each other's queues or results. Tasks record what
happened by appending lines to a file the test names (``path``), so a test
can see executions, hooks and signals across processes.
"""

from __future__ import annotations

import os
import time
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import Reject, SoftTimeLimitExceeded

from tests.apps.journal import lines, record  # noqa: F401  (tests read lines)
from tests.redis_keys import DEFAULT_URL

REDIS_URL = os.environ.get("CODA_TEST_REDIS_URL", DEFAULT_URL)
PREFIX = os.environ.get("CODA_TEST_CELERY_PREFIX", "coda-test:")

app = Celery("tests.apps.celery_app", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    broker_transport_options={"global_keyprefix": PREFIX},
    result_backend_transport_options={"global_keyprefix": PREFIX},
    task_default_queue=os.environ.get("CODA_TEST_CELERY_QUEUE", "celery"),
    result_expires=600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


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
def collect(values: list[Any]) -> list[Any]:
    return values


@app.task
def where() -> str:
    """Which fleet ran this: a Coda worker's hostname starts with "coda-"."""
    from celery import current_task

    return "coda" if str(current_task.request.hostname).startswith("coda-") else "celery"


@app.task
def fail(message: str) -> None:
    raise ValueError(message)


@app.task(bind=True)
def request_info(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
    request = self.request
    return {
        "id": request.id,
        "args": list(request.args or ()),
        "kwargs": dict(request.kwargs or {}),
        "retries": request.retries,
        "is_eager": request.is_eager,
        "root_id": request.root_id,
        "parent_id": request.parent_id,
        "headers": request.headers,
        "hostname": request.hostname,
        "redelivered": (request.delivery_info or {}).get("redelivered"),
        "priority": (request.delivery_info or {}).get("priority"),
        "called_directly": request.called_directly,
    }


@app.task(bind=True, max_retries=3, default_retry_delay=0.2)
def retry_until(self: Task, path: str, fail_times: int, countdown: float | None = None) -> int:
    runs = record(path, "run")
    record(path, f"at {time.time()} retries={self.request.retries}")
    if runs <= fail_times:
        raise self.retry(exc=ConnectionError(f"failure {runs}"), countdown=countdown)
    return runs


@app.task(
    bind=True,
    autoretry_for=(ConnectionError,),
    retry_backoff=True,
    retry_backoff_max=8,
    retry_jitter=False,
    max_retries=2,
)
def autoretry_backoff(self: Task, path: str, fail_times: int) -> int:
    runs = record(path, "run")
    record(path, f"at {time.time()} retries={self.request.retries}")
    if runs <= fail_times:
        raise ConnectionError(f"failure {runs}")
    return runs


class Hooked(Task):
    """A ``base=`` class whose hooks leave a trace in the task's ``path``."""

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        record(kwargs.get("path"), f"on_success {retval}")

    def on_failure(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        record(kwargs.get("path"), f"on_failure {type(exc).__name__}")

    def on_retry(self, exc: Any, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        record(kwargs.get("path"), f"on_retry {type(exc).__name__}")


@app.task(bind=True, base=Hooked, max_retries=1, default_retry_delay=0.05)
def hooked(self: Task, path: str, mode: str) -> str:
    if mode == "fail":
        raise KeyError("boom")
    if mode == "retry_once" and self.request.retries == 0:
        raise self.retry(exc=ConnectionError("again"))
    return mode


@app.task(soft_time_limit=0.5, time_limit=20)
def soft_limited(seconds: float) -> str:
    try:
        time.sleep(seconds)
    except SoftTimeLimitExceeded:
        return "soft limit caught"
    return "slept"


@app.task(base=Hooked, time_limit=1)
def hard_limited(path: str, seconds: float) -> str:
    record(path, f"pid {os.getpid()}")
    time.sleep(seconds)
    return "slept"


@app.task(bind=True, acks_late=True)
def acks_late_wait(self: Task, path: str, release: str) -> dict[str, Any]:
    """Writes its pid, then waits for ``release`` to exist (the test kills it meanwhile)."""
    record(path, f"pid {os.getpid()}")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"pid": os.getpid(), "redelivered": self.request.delivery_info.get("redelivered")}


@app.task(bind=True)
def early_ack_wait(self: Task, path: str, release: str) -> int:
    record(path, f"pid {os.getpid()}")
    deadline = time.monotonic() + 30
    while not os.path.exists(release) and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid()


@app.task(bind=True, acks_late=True)
def reject_once(self: Task, path: str) -> str:
    """Celery's requeue pattern: reject the first delivery, run the redelivered one."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    record(path, f"run redelivered={redelivered}")
    if not redelivered:
        raise Reject("not on the first delivery", requeue=True)
    return "ran on the redelivery"


@app.task(bind=True, acks_late=True)
def reject_times(self: Task, path: str, times: int) -> int:
    """Requeues its first ``times`` deliveries, then returns how many it saw."""
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    deliveries = record(path, "delivery")
    record(path, f"at {time.time()} redelivered={redelivered}")
    if deliveries <= times:
        raise Reject("not yet", requeue=True)
    return deliveries


@app.task(ignore_result=True)
def ignored(path: str) -> str:
    record(path, "ignored ran")
    return "not stored"


@app.task(queue="coda-test-other")
def on_other_queue(x: int) -> int:
    return x + 1000


def _signal_recorder(label: str) -> Any:
    def receiver(sender: Any = None, **kwargs: Any) -> None:
        call_kwargs = kwargs.get("kwargs") or getattr(kwargs.get("request"), "kwargs", None)
        if call_kwargs is None and label == "task_success":
            call_kwargs = sender.request.kwargs  # task_success carries only the result
        path = (call_kwargs or {}).get("signals_path")
        record(path, f"{label} {getattr(sender, 'name', sender)}")

    return receiver


for _name in ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry"):
    getattr(signals, _name).connect(_signal_recorder(_name), weak=False)


@app.task(bind=True, max_retries=1, default_retry_delay=0.05)
def signalled(self: Task, signals_path: str, fail: bool = False) -> str:
    if self.request.retries == 0:
        raise self.retry(exc=ConnectionError("once"))
    if fail:
        raise ValueError("fails after its retry")
    return "ok"
