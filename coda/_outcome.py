"""Turning exceptions into wire failures and payloads back into values."""

from __future__ import annotations

import traceback
from typing import Any

from .errors import Cancelled, CodaError, RemoteError, TaskFailed, WorkflowFailed
from .messages import Failure, Payload
from .serialization import registry

__all__ = ["decode_payload", "encode_value", "error_from_failure", "failure_from"]

MAX_TRACEBACK = 16 * 1024


def type_name(exc: BaseException) -> str:
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def failure_from(exc: BaseException, retry_in: float | None = None) -> Failure:
    if isinstance(exc, RemoteError):  # a task failure the workflow did not catch
        name, message = type_name(exc), f"{exc.type_name}: {exc.message}"
    else:
        name, message = type_name(exc), str(exc)
    trace = "".join(traceback.format_exception(exc))
    if len(trace) > MAX_TRACEBACK:
        trace = "...\n" + trace[-MAX_TRACEBACK:]
    return Failure(type_name=name, message=message, traceback=trace, retry_in=retry_in)


def encode_value(value: Any, serializer: str) -> Payload:
    content_type, encoding, body = registry.dumps(value, serializer)
    return Payload(content_type, encoding, memoryview(body))


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
