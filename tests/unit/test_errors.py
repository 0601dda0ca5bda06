"""The exception hierarchy: one base for every error, and a retry signal that a
task's own ``except CodaError:`` / ``except Exception:`` cannot swallow."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

import coda
import coda.errors
from coda._outcome import decode_payload, encode_value
from coda.errors import CodaError, RetryRequested
from coda.messages import Message, RunTask, RunWorkflow, TaskDone, WorkflowDone
from coda.worker.connection import Worker

NO_ARGS = encode_value({}, "msgpack")


def test_every_error_in_coda_errors_derives_from_coda_error() -> None:
    errors = [getattr(coda.errors, name) for name in coda.errors.__all__]
    not_errors = [cls.__name__ for cls in errors if not issubclass(cls, CodaError)]
    assert not_errors == ["RequeueRequested", "RetryRequested"]


def test_retry_requested_is_neither_a_coda_error_nor_an_exception() -> None:
    assert issubclass(RetryRequested, BaseException)
    assert not issubclass(RetryRequested, Exception)


def test_the_docstring_draws_every_class() -> None:
    drawing = (coda.errors.__doc__ or "").split("Only ``RemoteError``")[0]
    assert [name for name in coda.errors.__all__ if not re.search(rf"\b{name}\b", drawing)] == []


@coda.task(name="test_errors.retries_inside_except_coda_error")
def retries_inside_except_coda_error(n: int = 0) -> str:
    try:
        raise RetryRequested(2.5, args={"n": n + 1})
    except CodaError:
        return "swallowed by except CodaError"


@coda.task(name="test_errors.retries_inside_except_exception")
async def retries_inside_except_exception(n: int = 0) -> str:
    try:
        raise RetryRequested(0.5, args={"n": n + 1})
    except Exception:
        return "swallowed by except Exception"


@pytest.mark.parametrize(
    ("name", "delay"),
    [
        ("test_errors.retries_inside_except_coda_error", 2.5),
        ("test_errors.retries_inside_except_exception", 0.5),
    ],
)
def test_a_task_catching_errors_still_retries(name: str, delay: float) -> None:
    async def execute() -> TaskDone:
        worker = Worker(task_slots=1)
        return await worker.tasks._execute(RunTask(job_id="j1", name=name, args=NO_ARGS, attempt=1))

    done = asyncio.run(execute())
    assert done.result is None
    assert done.failure is not None and done.failure.retry_in == delay
    assert done.retry_args is not None and decode_payload(done.retry_args) == {"n": 1}


@coda.workflow(name="test_errors.workflow_asking_for_a_retry")
async def workflow_asking_for_a_retry() -> None:
    raise RetryRequested(30.0)


class _Sink:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


def test_a_workflow_raising_retry_requested_fails_that_attempt() -> None:
    """The workflow's own rerun policy applies (max_retries=3, no delay), not the 30 s."""

    async def run() -> list[Message]:
        worker = Worker(task_slots=1)
        sink = _Sink()
        worker.conn = sink  # type: ignore[assignment]
        name = "test_errors.workflow_asking_for_a_retry"
        msg = RunWorkflow(run_id="r1", name=name, args=NO_ARGS, attempt=1)
        await asyncio.wait_for(worker.workflows._run_workflow(msg), 5)
        return sink.sent

    sent: list[Any] = asyncio.run(run())
    assert len(sent) == 1 and isinstance(sent[0], WorkflowDone)
    failure = sent[0].failure
    assert failure is not None and failure.type_name == "coda.errors.RetryRequested"
    assert failure.retry_in == 0.0
