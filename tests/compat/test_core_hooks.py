"""The small, generic core hooks the Celery bridge relies on, tested without Celery
processes: ``RetryRequested`` in the worker and the main-thread executor.
(``Submit.not_before``, ``TaskDone.retry_args`` and ``RunTask.redelivered`` are
engine behaviour, tested in tests/unit/test_engine.py.)"""

from __future__ import annotations

import threading

import pytest

from coda.errors import RetryRequested
from coda.messages import Payload
from coda.worker.mainthread import MainThreadExecutor
from coda.worker.tasks import retry_done

NEXT = Payload("application/x-msgpack", "binary", b"\x81\xa1n\x01")


def test_retry_requested_becomes_a_failure_with_retry_in_and_new_args() -> None:
    exc = RetryRequested(1.5, args={"n": 1}, cause=ConnectionError("down"))
    done = retry_done("job-1", exc, "msgpack")
    assert done.failure is not None and done.failure.retry_in == 1.5
    assert done.failure.type_name == "ConnectionError" and done.retry_args == NEXT


def test_main_thread_executor_runs_work_on_the_serving_thread() -> None:
    executor = MainThreadExecutor()
    seen: list[str] = []

    def submit_from_elsewhere() -> None:
        future = executor.submit(lambda: threading.current_thread().name)
        seen.append(future.result(timeout=5))
        failing = executor.submit(lambda: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            failing.result(timeout=5)
        executor.shutdown()

    other = threading.Thread(target=submit_from_elsewhere)
    other.start()
    executor.run_until_shutdown()
    other.join()
    assert seen == [threading.current_thread().name]
