"""The contract between Celery producers and Coda workers: what a job carries.

A Coda job's arguments are a mapping of keyword arguments (encoded like any
Coda payload, msgpack by default). For an adopted Celery task that mapping
is one of two things:

1. **A Celery protocol-v2 message**, under the single key ``ENVELOPE``
   (``"__celery__"``, defined by the broker, whose divert builds the same shape)::

       {"__celery__": {
           "headers":          {...},   # v2 headers: task, id, eta, expires, retries,
                                        # timelimit [hard, soft], root_id, parent_id,
                                        # group, group_index, ... plus user headers, flat
           "properties":       {...},   # correlation_id, reply_to, priority,
                                        # delivery_info {exchange, routing_key}
           "body":             b"...",  # the serialized [args, kwargs, embed] where embed
                                        # is {callbacks, errbacks, chain, chord}
           "content_type":     "application/json",
           "content_encoding": "utf-8",
       }}

   This is exactly what ``Celery.send_task`` hands to ``Producer.publish``,
   so nothing is lost between a Celery producer and a Coda worker: the body
   stays in the task's own serializer (``serializer=`` honoured, kombu's
   registry used to decode it, ``accept_content`` enforced), the headers keep
   Celery's ids, retries, limits and user headers. ``.delay()`` routed to Coda,
   ``self.retry()`` (the republished message replaces the job's arguments)
   and canvas leaves all produce this shape; a kombu transport can build it
   from a received message with ``CeleryMessage.from_kombu``.

2. **Plain keyword arguments** (``coda.context.spawn_task(celery_task,
   args={...})`` or ``Client.submit(celery_task, args={...})``): the task runs
   with ``args=()``, those kwargs and a fresh task id.

The job's Coda id is the Celery task id when a producer submits (``run_id``),
so a resubmission is idempotent and ``AsyncResult(id)`` names the same run.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from coda.broker.divert import ENVELOPE

__all__ = ["ENVELOPE", "CeleryCall", "CeleryMessage", "parse_job_args"]


def _iso_to_epoch(value: Any) -> float | None:
    """Seconds since the epoch for an ISO-8601 ``eta``/``expires`` header (naive = UTC)."""
    if value is None or value == "":
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class CeleryMessage:
    """One protocol-v2 task message, as ``Producer.publish`` received it."""

    headers: Mapping[str, Any]
    properties: Mapping[str, Any]
    body: bytes
    content_type: str
    content_encoding: str

    @property
    def task_id(self) -> str:
        return str(self.headers["id"])

    @property
    def name(self) -> str:
        return str(self.headers["task"])

    @property
    def eta(self) -> float | None:
        """When the task may start (epoch seconds), from the ``eta`` header."""
        return _iso_to_epoch(self.headers.get("eta"))

    @property
    def expires(self) -> float | None:
        return _iso_to_epoch(self.headers.get("expires"))

    @property
    def routing_key(self) -> str | None:
        info = self.properties.get("delivery_info") or {}
        key = info.get("routing_key")
        return str(key) if key else None

    def to_job_args(self) -> dict[str, Any]:
        """The Coda job arguments carrying this message."""
        return {
            ENVELOPE: {
                "headers": dict(self.headers),
                "properties": dict(self.properties),
                "body": bytes(self.body),
                "content_type": self.content_type,
                "content_encoding": self.content_encoding,
            }
        }

    @classmethod
    def from_envelope(cls, envelope: Mapping[str, Any]) -> CeleryMessage:
        try:
            headers = envelope["headers"]
            body = envelope["body"]
            if not isinstance(headers, Mapping) or "id" not in headers or "task" not in headers:
                raise ValueError("headers must be a mapping with 'id' and 'task'")
            return cls(
                headers=dict(headers),
                properties=dict(envelope.get("properties") or {}),
                body=body.encode("utf-8") if isinstance(body, str) else bytes(body),
                content_type=str(envelope["content_type"]),
                content_encoding=str(envelope.get("content_encoding") or "utf-8"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed Celery message in job arguments: {exc}") from None

    @classmethod
    def from_kombu(cls, message: Any) -> CeleryMessage:
        """From a received ``kombu.Message`` (the transport's side of the contract)."""
        properties = dict(message.properties or {})
        properties["delivery_info"] = dict(message.delivery_info or {})
        return cls(
            headers=dict(message.headers or {}),
            properties=properties,
            body=message.body if isinstance(message.body, bytes) else message.body.encode(),
            content_type=message.content_type,
            content_encoding=message.content_encoding,
        )

    def decode(
        self, accept: Collection[str] | None
    ) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        """``(args, kwargs, embed)`` from the body, refusing content types not in ``accept``."""
        from kombu.compression import decompress
        from kombu.serialization import loads

        body = self.body
        compression = self.headers.get("compression")
        if compression:
            body = decompress(body, compression)
        decoded = loads(body, self.content_type, self.content_encoding, accept=accept)
        if not isinstance(decoded, list | tuple) or len(decoded) != 3:
            raise ValueError("a protocol-v2 body is [args, kwargs, embed]")
        args, kwargs, embed = decoded
        return list(args), dict(kwargs), dict(embed or {})


@dataclass(frozen=True, slots=True)
class CeleryCall:
    """One execution request, parsed once at the boundary."""

    name: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    headers: Mapping[str, Any] = field(default_factory=dict)
    embed: Mapping[str, Any] = field(default_factory=dict)
    properties: Mapping[str, Any] = field(default_factory=dict)
    message: CeleryMessage | None = None

    @property
    def expires(self) -> float | None:
        return _iso_to_epoch(self.headers.get("expires"))

    def request(self, hostname: str, redelivered: bool) -> dict[str, Any]:
        """The request dict a Celery worker hands its tracer (worker/request.py)."""
        info = self.properties.get("delivery_info") or {}
        delivery_info = {
            "exchange": info.get("exchange"),
            "routing_key": info.get("routing_key"),
            "priority": self.properties.get("priority"),
            "redelivered": redelivered,
        }
        request: dict[str, Any] = {"id": self.task_id, "task": self.name, "root_id": self.task_id}
        request.update(self.headers)
        request.update(
            properties=dict(self.properties),
            reply_to=self.properties.get("reply_to"),
            correlation_id=self.properties.get("correlation_id", self.task_id),
            hostname=hostname,
            delivery_info=delivery_info,
            args=self.args,
            kwargs=self.kwargs,
            is_eager=False,
        )
        request.update(self.embed)
        return request


def parse_job_args(
    name: str, job_args: Mapping[str, Any], accept: Collection[str] | None
) -> CeleryCall:
    """The call a job's arguments describe (see the module docstring)."""
    envelope = job_args.get(ENVELOPE)
    if envelope is None:
        return CeleryCall(name=name, task_id=str(uuid.uuid4()), args=[], kwargs=dict(job_args))
    if not isinstance(envelope, Mapping) or len(job_args) != 1:
        raise ValueError(f"{ENVELOPE!r} must be the only argument and a mapping")
    message = CeleryMessage.from_envelope(envelope)
    if message.name != name:
        raise ValueError(f"message for task {message.name!r} submitted as {name!r}")
    args, kwargs, embed = message.decode(accept)
    return CeleryCall(
        name=name,
        task_id=message.task_id,
        args=args,
        kwargs=kwargs,
        headers=message.headers,
        embed=embed,
        properties=message.properties,
        message=message,
    )
