"""Turning exceptions into wire failures and payloads back into values.

``failure_from`` is total: it never raises, whatever the exception does
when asked for its type's name, its ``str()`` or its traceback. A worker
calls it on the way to answering the supervisor, so an exception escaping
here would leave the caller waiting for an answer that never comes. What it
cannot render, it describes (``<exception str() failed: ...>``).
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .errors import (
    Cancelled,
    CodaError,
    RemoteError,
    TaskFailed,
    ValueTooLargeError,
    WorkflowFailed,
)
from .messages import Failure, Payload
from .serialization import registry

if TYPE_CHECKING:
    from .decorators import Spec

__all__ = [
    "FRAME_LIMIT_OPTION",
    "decode_payload",
    "encode_value",
    "error_from_failure",
    "failure_after",
    "failure_from",
    "reraise_if_cancelled",
    "value_too_large",
]

MAX_TRACEBACK = 16 * 1024
MAX_MESSAGE = 16 * 1024

# The name and module a class really has, read past any metaclass override.
_qualname_of = type.__dict__["__qualname__"].__get__
_module_of = type.__dict__["__module__"].__get__


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    qualname: str = _qualname_of(cls)
    module = _module_of(cls)
    if type(module) is not str or module == "builtins":  # exactly str: nothing overridden
        return qualname
    return f"{module}.{qualname}"


def failure_from(exc: BaseException, retry_in: float | None = None) -> Failure:
    """``exc`` flattened for the wire; never raises (see the module's docstring)."""
    name = _render(type_name, exc, "type name")
    message = _render(_message, exc, "str()")
    try:
        trace = _wire_text("".join(traceback.format_exception(exc)))
    except BaseException as error:  # keep what can still be had: the frames
        trace = f"<exception traceback failed: {_reason(error)}>\n{_frames(exc)}{name}: {message}\n"
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    if len(trace) > MAX_TRACEBACK:
        trace = "...\n" + trace[-MAX_TRACEBACK:]
    return Failure(type_name=name, message=message, traceback=trace, retry_in=retry_in)


def failure_after(exc: BaseException, spec: Spec, attempt: int) -> Failure:
    """``failure_from`` with the spec's decision to retry; an exception that
    breaks even that decision (its class check raises) is not retried, nor is
    a value too large to send."""
    try:
        too_large = isinstance(exc, ValueTooLargeError)  # the same value would be again
        retry_in = None if too_large else spec.retry_in(exc, attempt)
    except BaseException:  # a hostile exception: see the module's docstring
        retry_in = None
    return failure_from(exc, retry_in)


def _message(exc: BaseException) -> str:
    if isinstance(exc, RemoteError):  # a task failure the workflow did not catch
        return f"{exc.type_name}: {exc.message}"
    return str(exc)


def _render(render: Callable[[BaseException], str], exc: BaseException, what: str) -> str:
    """``render(exc)`` as plain text, or a description of how it failed."""
    try:
        return _wire_text(render(exc))
    except BaseException as error:
        return f"<exception {what} failed: {_reason(error)}>"


def _reason(error: BaseException) -> str:
    name: str = _qualname_of(type(error))
    try:
        detail = _wire_text(str(error))
    except BaseException:
        return name
    return f"{name}: {detail}" if detail else name


def _frames(exc: BaseException) -> str:
    try:
        frames = traceback.format_tb(BaseException.__dict__["__traceback__"].__get__(exc))
        return _wire_text("Traceback (most recent call last):\n" + "".join(frames))
    except BaseException:
        return ""


def _wire_text(text: str) -> str:
    """``text`` as a plain ``str`` that encodes as UTF-8: a subclass's
    overrides are left behind (``str.encode``, not ``text.encode``) and lone
    surrogates, which UTF-8 cannot carry, are escaped."""
    return str.encode(text, "utf-8", "backslashreplace").decode("utf-8")


FRAME_LIMIT_OPTION = "coda supervisor --frame-limit BYTES"


def encode_value(
    value: Any, serializer: str, *, limit: int | None = None, what: str = "the value"
) -> Payload:
    """``value`` serialized; with ``limit``, refused (``ValueTooLargeError``)
    if it encodes to more bytes than that: one message could not carry it."""
    content_type, encoding, body = registry.dumps(value, serializer)
    if limit is not None and len(body) > limit:
        raise value_too_large(what, len(body), limit)
    return Payload(content_type, encoding, memoryview(body))


def value_too_large(what: str, size: int, limit: int) -> ValueTooLargeError:
    """The refusal of a value above the limit: what, by how much, and the two
    ways out."""
    return ValueTooLargeError(
        f"{what} would take {size:,} bytes encoded, above the supervisor's limit of "
        f"{limit:,} bytes for an argument or result: pass a reference to the data instead "
        f"(a file path, a key), or raise the limit with `{FRAME_LIMIT_OPTION}`",
        size=size,
        limit=limit,
    )


def decode_payload(payload: Payload | None, accept: frozenset[str] | None = None) -> Any:
    if payload is None:
        return None
    return registry.loads(payload.body, payload.content_type, payload.content_encoding, accept)


CANCELLED_TYPE = "coda.Cancelled"  # the failure of a run cancelled on request


def error_from_failure(failure: Failure, kind: str) -> CodaError:
    """The exception a run's failure is raised as where it is awaited."""
    if failure.type_name == CANCELLED_TYPE:
        return Cancelled(f"the {kind} was cancelled: {failure.message}")
    cls = WorkflowFailed if kind == "workflow" else TaskFailed
    return cls(failure.type_name, failure.message, failure.traceback)


def reraise_if_cancelled(exc: BaseException) -> None:
    """Re-raise ``exc`` if it is the current asyncio task being cancelled
    (the loop is closing): that is not the outcome of the user's code. A
    ``CancelledError`` that user code raised, or awaited from another task,
    while nobody cancelled this one, is a failure like any other."""
    if issubclass(type(exc), asyncio.CancelledError):
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise exc
