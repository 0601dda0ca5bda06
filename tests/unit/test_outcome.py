"""``failure_from`` is total: whatever an exception does when it is named,
printed or formatted, it becomes a ``Failure`` that can go on the wire."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coda._outcome import MAX_MESSAGE, failure_after, failure_from, reraise_if_cancelled
from coda.decorators import Spec
from coda.errors import TaskFailed
from coda.messages import Failure, TaskDone
from coda.protocol import decode_message, encode_message
from coda.retry import RetryPolicy
from tests.apps.hostile import (
    BrokenNotesError,
    ClasslessError,
    NamelessError,
    UnprintableError,
)


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a worker sees it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


def travels(failure: Failure) -> Failure:
    """The failure as the supervisor decodes it from a TaskDone frame."""
    message = decode_message(encode_message(TaskDone(job_id="j", failure=failure))[4:])
    assert isinstance(message, TaskDone) and message.failure is not None
    return message.failure


class StrRaisesSystemExit(Exception):
    def __str__(self) -> str:
        raise SystemExit("from __str__")


class StrRaisesUnprintable(Exception):
    def __str__(self) -> str:
        raise UnprintableError()


class StrSubclass(str):
    def encode(self, *args: Any, **kwargs: Any) -> bytes:
        raise RuntimeError("overridden encode")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("overridden format")


class ReturnsStrSubclass(Exception):
    def __str__(self) -> str:
        return StrSubclass("subclassed message")


def test_an_unprintable_exception_is_described_with_its_type_and_frames() -> None:
    failure = travels(failure_from(raised(UnprintableError())))
    assert failure.type_name == "tests.apps.hostile.UnprintableError"
    assert failure.message == (
        "<exception str() failed: RuntimeError: this exception cannot be printed>"
    )
    assert "Traceback (most recent call last)" in failure.traceback
    assert "in raised" in failure.traceback


def test_a_class_whose_name_lookups_raise_is_named_from_the_type_itself() -> None:
    failure = travels(failure_from(raised(NamelessError("lost"))))
    assert failure.type_name == "tests.apps.hostile.NamelessError"
    assert failure.message == "lost"
    # traceback.format_exception reads __qualname__ and fails: the frames are kept
    assert failure.traceback.startswith("<exception traceback failed: RuntimeError: no __")
    assert "in raised" in failure.traceback
    assert failure.traceback.endswith("tests.apps.hostile.NamelessError: lost\n")


def test_an_exception_that_breaks_traceback_formatting_keeps_its_frames() -> None:
    failure = travels(failure_from(raised(BrokenNotesError("noted"))))
    assert failure.traceback.startswith(
        "<exception traceback failed: RuntimeError: no notes>\nTraceback (most recent call last)"
    )
    assert "in raised" in failure.traceback
    assert failure.message == "noted"


def test_an_exception_whose_class_attribute_raises_is_rendered() -> None:
    failure = travels(failure_from(raised(ClasslessError("classless"))))
    assert failure.type_name == "tests.apps.hostile.ClasslessError"
    assert failure.message == "<exception str() failed: RuntimeError: no class>"


def test_str_raising_a_base_exception_or_an_unprintable_one_is_described() -> None:
    assert failure_from(StrRaisesSystemExit()).message == (
        "<exception str() failed: SystemExit: from __str__>"
    )
    assert failure_from(StrRaisesUnprintable()).message == (
        "<exception str() failed: UnprintableError>"
    )


def test_a_str_subclass_message_becomes_plain_text() -> None:
    failure = travels(failure_from(raised(ReturnsStrSubclass())))
    assert type(failure.message) is str and failure.message == "subclassed message"


def test_lone_surrogates_are_escaped_so_the_failure_can_be_encoded() -> None:
    failure = travels(failure_from(raised(ValueError("bad \udc80 byte"))))
    assert failure.message == "bad \\udc80 byte"
    assert "bad \\udc80 byte" in failure.traceback


def test_a_huge_message_is_capped() -> None:
    failure = failure_from(ValueError("x" * (10 * MAX_MESSAGE)))
    assert failure.message == "x" * MAX_MESSAGE + "..."


@pytest.mark.parametrize(
    ("exc", "type_name"),
    [
        (SystemExit(2), "SystemExit"),
        (KeyboardInterrupt(), "KeyboardInterrupt"),
        (GeneratorExit(), "GeneratorExit"),
        (asyncio.CancelledError(), "asyncio.exceptions.CancelledError"),
    ],
)
def test_base_exceptions_are_failures_like_others(exc: BaseException, type_name: str) -> None:
    assert failure_from(raised(exc)).type_name == type_name


def test_a_remote_failure_not_caught_keeps_the_remote_type_in_its_message() -> None:
    failure = failure_from(TaskFailed("ValueError", "boom", "remote tb"))
    assert failure.type_name == "coda.errors.TaskFailed"
    assert failure.message == "ValueError: boom"


def test_an_exception_that_breaks_the_retry_decision_is_not_retried() -> None:
    spec = Spec(
        name="t",
        kind="task",
        fn=lambda: None,
        is_async=False,
        retry=RetryPolicy(max_retries=3),
        retry_on=(ConnectionError,),
    )
    assert failure_after(ConnectionError("down"), spec, 1).retry_in is not None
    failure = failure_after(raised(ClasslessError()), spec, 1)
    assert failure.retry_in is None
    assert failure.type_name == "tests.apps.hostile.ClasslessError"


def test_a_cancelled_error_is_a_cancellation_only_when_the_task_was_cancelled() -> None:
    async def raises_its_own() -> str:
        try:
            raise asyncio.CancelledError()
        except asyncio.CancelledError as exc:
            reraise_if_cancelled(exc)
            return "a failure"

    async def cancelled_while_waiting() -> str:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError as exc:
            reraise_if_cancelled(exc)
            return "a failure"
        return "not reached"

    async def check() -> None:
        assert await asyncio.create_task(raises_its_own()) == "a failure"
        waiting = asyncio.create_task(cancelled_while_waiting())
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(check())
