"""Celery task messages as the supervisor reads them, without Celery.

The broker's Celery node (``control``) reports tasks to ``celery inspect``
and purges them by queue. Two places hold a Celery message in the
supervisor, and both keep Celery's protocol-v2 headers and properties
intact:

- a Coda job of an adopted Celery task (``install()`` routing, a diverted
  message, a canvas leaf): its arguments are ``{ENVELOPE: {"headers",
  "properties", "body", ...}}``, encoded with json or msgpack;
- a message the broker holds until its ETA: a kombu message dict
  (``{"headers", "properties", "body", ...}``) encoded by the transport
  with msgpack.

``TaskMessage`` is what both say, parsed once here; the task's own body
(its arguments) is never decoded: ``argsrepr``/``kwargsrepr`` are the
headers Celery writes for exactly this use. Anything else (a native Coda
task's arguments, a malformed message) reads as None.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from ..errors import CodaError
from ..messages import Payload
from ..serialization import registry as serializers
from .divert import ENVELOPE

__all__ = ["TaskMessage", "from_job_args", "from_kombu", "iso_time"]

_SAFE = frozenset(serializers.content_type_for(name) for name in ("json", "msgpack"))
_kombu = msgspec.msgpack.Decoder()


class TaskMessage(msgspec.Struct, frozen=True):
    id: str
    name: str
    argsrepr: str = ""
    kwargsrepr: str = ""
    eta: str | None = None
    expires: str | None = None
    retries: int = 0
    priority: int = 0
    exchange: str = ""
    routing_key: str = ""
    root_id: str | None = None
    parent_id: str | None = None

    def delivery_info(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "routing_key": self.routing_key,
            "priority": self.priority,
            "redelivered": False,
        }


def iso_time(epoch: float | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).isoformat()


def _parse(headers: Any, properties: Any) -> TaskMessage | None:
    if not isinstance(headers, dict) or not isinstance(properties, dict):
        return None
    task_id, name = headers.get("id"), headers.get("task")
    if not isinstance(task_id, str) or not isinstance(name, str):
        return None
    info = properties.get("delivery_info")
    info = info if isinstance(info, dict) else {}
    try:
        priority = int(properties.get("priority") or 0)
        retries = int(headers.get("retries") or 0)
    except (TypeError, ValueError):
        priority = retries = 0
    return TaskMessage(
        id=task_id,
        name=name,
        argsrepr=str(headers.get("argsrepr") or ""),
        kwargsrepr=str(headers.get("kwargsrepr") or ""),
        eta=_text(headers.get("eta")),
        expires=_text(headers.get("expires")),
        retries=retries,
        priority=priority,
        exchange=str(info.get("exchange") or ""),
        routing_key=str(info.get("routing_key") or ""),
        root_id=_text(headers.get("root_id")),
        parent_id=_text(headers.get("parent_id")),
    )


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def envelope_of(args: Payload) -> dict[str, Any] | None:
    """The Celery message in a job's arguments, or None."""
    if args.content_type not in _SAFE:
        return None
    try:
        decoded = serializers.loads(args.body, args.content_type, args.content_encoding, _SAFE)
    except (CodaError, ValueError, TypeError):
        return None
    if not isinstance(decoded, dict) or len(decoded) != 1:
        return None
    envelope = decoded.get(ENVELOPE)
    return envelope if isinstance(envelope, dict) else None


def from_job_args(args: Payload) -> TaskMessage | None:
    """The Celery message a Coda job carries, if it carries one."""
    envelope = envelope_of(args)
    if envelope is None:
        return None
    return _parse(envelope.get("headers"), envelope.get("properties"))


def from_kombu(body: bytes) -> TaskMessage | None:
    """The Celery message of a kombu message the broker holds, if it is one."""
    try:
        message = _kombu.decode(body)
    except msgspec.MsgspecError:
        return None
    if not isinstance(message, dict):
        return None
    return _parse(message.get("headers"), message.get("properties"))
