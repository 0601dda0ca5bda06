"""The small, generic core hooks the Celery bridge relies on, tested without Celery
processes: ``Submit.not_before``, ``TaskDone.retry_args``, ``RunTask.redelivered``,
``RetryRequested`` in the worker and the main-thread executor."""

from __future__ import annotations

import threading
import time

import pytest

from coda.errors import RetryRequested
from coda.messages import Failure, Payload, RunTask, Started, Submit, TaskDone
from coda.worker.mainthread import MainThreadExecutor
from coda.worker.tasks import retry_done
from tests.unit.test_scheduler import ARGS, FakePeer, run, turn, until_sent, worker

NEXT = Payload("application/x-msgpack", "binary", b"\x81\xa1n\x01")


def test_not_before_holds_a_submission_back() -> None:
    async def check(scheduler) -> None:  # type: ignore[no-untyped-def]
        peer, handle = FakePeer(), worker(scheduler, 1)
        wpeer = handle.peer
        scheduler.submit(peer, Submit(req_id=1, name="t", args=ARGS, not_before=time.time() + 0.2))
        await turn()
        assert not [m for m in wpeer.sent if isinstance(m, RunTask)]
        assert scheduler.status()["delayed"] == 1
        await until_sent(wpeer, RunTask)

    run(check)


def test_retry_args_replace_the_next_attempts_arguments() -> None:
    async def check(scheduler) -> None:  # type: ignore[no-untyped-def]
        peer, handle = FakePeer(), worker(scheduler, 1)
        wpeer = handle.peer
        scheduler.submit(peer, Submit(req_id=1, name="t", args=ARGS, run_id="job-1"))
        await turn()
        (first,) = [m for m in wpeer.take() if isinstance(m, RunTask)]
        retry = Failure("ConnectionError", "again", retry_in=0.0)
        scheduler.task_done(handle, TaskDone(job_id="job-1", failure=retry, retry_args=NEXT))
        await until_sent(wpeer, RunTask)
        (second,) = [m for m in wpeer.take() if isinstance(m, RunTask)]
        assert (first.args, second.args, second.attempt) == (ARGS, NEXT, 2)
        assert second.redelivered is False

    run(check)


def test_a_job_started_by_a_dead_worker_is_marked_redelivered() -> None:
    async def check(scheduler) -> None:  # type: ignore[no-untyped-def]
        peer, first = FakePeer(), worker(scheduler, 1)
        scheduler.submit(peer, Submit(req_id=1, name="t", args=ARGS, run_id="job-1"))
        await turn()
        scheduler.started(first, Started(job_id="job-1"))
        scheduler.worker_left(first.id)
        second = worker(scheduler, 2)
        await turn()
        (again,) = [m for m in second.peer.sent if isinstance(m, RunTask)]
        assert again.redelivered is True

    run(check)


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
