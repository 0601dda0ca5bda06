"""kombu message dicts to ``Publish`` frames and ``Deliver`` frames back.

The boundary where kombu's untyped message (``{"body", "headers",
"properties", "content-type", "content-encoding"}``) meets Coda's typed
frames. The whole dict travels as one MessagePack blob the supervisor never
decodes; what it needs is read here, once:

- ``properties.priority`` (0-9, higher first);
- ``properties.expiration``: AMQP's per-message TTL, milliseconds as a
  string (kombu sets it from ``expiration=``; Celery from ``expires``);
- Celery's protocol 2 headers ``eta`` and ``expires`` (ISO 8601) and ``id``
  (the task id, so an expired message can be recorded as revoked);
- ``properties.delivery_mode``: 1 (transient) keeps the message out of the
  supervisor's store; 2 (persistent, kombu's default) puts it there when its
  queue is durable.

Properties that are not AMQP's are dropped on the way, as AMQP clients do
(``properties``).

On delivery the supervisor's delivery tag and ``redelivered`` flag are put
where kombu and Celery read them: ``properties.delivery_tag`` and
``properties.delivery_info.redelivered``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from ...broker.messages import Deliver, Publish
from .properties import kept_properties

__all__ = ["decode_delivery", "encode_publish", "parse_time"]

TRANSIENT = 1  # AMQP's delivery_mode for a message no broker should write down
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def parse_time(value: object) -> float | None:
    """An ISO 8601 string or datetime as epoch seconds (naive means UTC)."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _priority(properties: dict[str, Any]) -> int:
    try:
        return max(0, min(9, int(properties.get("priority") or 0)))
    except (TypeError, ValueError):
        return 0


def _ttl(properties: dict[str, Any]) -> float | None:
    expiration = properties.get("expiration")
    if expiration is None:
        return None
    try:
        return max(0.0, float(expiration) / 1000.0)
    except (TypeError, ValueError):
        return None


def encode_publish(
    message: dict[str, Any], exchange: str, routing_key: str, *, req_id: int | None = None
) -> Publish:
    """The frame for one ``basic_publish`` of a kombu-prepared message
    (``req_id``: ask for a confirm), its properties cut down to AMQP's
    (``properties``)."""
    properties = message["properties"] = kept_properties(message.get("properties") or {})
    properties.pop("delivery_tag", None)
    delivery_info = properties.setdefault("delivery_info", {})
    delivery_info["exchange"] = exchange
    delivery_info["routing_key"] = routing_key
    headers = message.get("headers") or {}
    task = headers.get("task")
    task_id = headers.get("id") if task else None
    return Publish(
        exchange=exchange,
        routing_key=routing_key,
        body=_encoder.encode(message),
        priority=_priority(properties),
        ttl=_ttl(properties),
        eta=parse_time(headers.get("eta")),
        expires=parse_time(headers.get("expires")),
        task_id=task_id if isinstance(task_id, str) else None,
        task=task if isinstance(task, str) else None,
        persistent=properties.get("delivery_mode") != TRANSIENT,
        req_id=req_id,
    )


def decode_delivery(deliver: Deliver) -> dict[str, Any]:
    """The kombu message dict of a delivery, with its lease's tag."""
    payload: dict[str, Any] = _decoder.decode(deliver.body)
    properties = payload.setdefault("properties", {})
    properties["delivery_tag"] = deliver.delivery_tag
    delivery_info = properties.setdefault("delivery_info", {})
    delivery_info["redelivered"] = deliver.redelivered
    delivery_info["consumer_tag"] = deliver.consumer_tag
    delivery_info.setdefault("routing_key", deliver.queue)
    delivery_info.setdefault("priority", properties.get("priority"))
    return payload
