"""One ``coda://`` channel: AMQP's channel methods as frames to the supervisor.

Topology (declare, bind, purge, delete), ``basic_consume`` and ``basic_get``
are requests the supervisor answers; an ``Error`` answer becomes the AMQP
channel error kombu and Celery expect (``NotFound``, ``PreconditionFailed``,
...), and the connection stays usable. ``basic_publish`` waits for the
supervisor's confirm unless the transport's ``confirm_publish`` is off; ack,
reject, qos and cancel are sent without waiting. Nothing is kept here but
the callbacks of this channel's consumers: exchanges, bindings, queues,
credit and the lease of every unacked message live in the supervisor.

Delivery tags name leases of one connection of the supervisor. An ack or
reject for a delivery that came on a connection since lost (the channel's
transport was closed, or reconnected) is dropped: the supervisor that
issued the tag requeued the message when the connection died, or, if it
died itself, its successor loaded the message back as redelivered.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import amqp.exceptions
from amqp.protocol import queue_declare_ok_t
from kombu.transport import virtual
from kombu.utils.uuid import uuid

from ...broker.exchanges import EXCHANGE_TYPES
from ...broker.messages import (
    Ack,
    BasicGet,
    BrokerOk,
    Cancel,
    ChannelClose,
    Consume,
    Deliver,
    ExchangeDeclare,
    ExchangeDelete,
    Qos,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    QueueUnbind,
    Recover,
    Reject,
)
from ...errors import CodaError, ConnectionLostError
from ...messages import Error, WireMessage
from .envelope import decode_delivery, encode_publish
from .link import Link

if TYPE_CHECKING:
    from .transport import Transport

__all__ = ["Channel"]

log = logging.getLogger("coda.compat.kombu")

_CHANNEL_ERRORS: dict[str, type[amqp.exceptions.ChannelError]] = {
    "not_found": amqp.exceptions.NotFound,
    "not_equivalent": amqp.exceptions.PreconditionFailed,
    "in_use": amqp.exceptions.PreconditionFailed,
    "locked": amqp.exceptions.ResourceLocked,
    "access_refused": amqp.exceptions.AccessRefused,
}


def _seconds(arguments: dict[str, Any], key: str) -> float | None:
    value = arguments.get(key)
    return None if value is None else float(value) / 1000.0


class Channel(virtual.Channel):
    """One AMQP-style channel; its state lives in the supervisor."""

    supports_fanout = True
    do_restore = False  # leases live in the supervisor
    # kombu's base declares these as str and a two-name tuple
    body_encoding = None  # type: ignore[assignment]  # frames carry bytes: no base64
    from_transport_options = ()  # type: ignore[assignment]
    connection: Transport

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)  # type: ignore[no-untyped-call]  # kombu's
        self._handlers: dict[str, tuple[Callable[[Any], Any], bool]] = {}
        self._tags_of: tuple[Link, int] | None = None  # the connection our delivery tags name
        connection.channels_by_id[self.channel_id] = self

    # -- plumbing -------------------------------------------------------------

    @property
    def link(self) -> Link:
        return self.connection.link

    def _call(self, build: Callable[[int], WireMessage]) -> WireMessage:
        reply = self.link.call(build(self.link.next_id()))
        if isinstance(reply, Error) and reply.code == "shutting_down":
            # as a stopping broker closes connections: kombu connects to the next one
            self.link.close()
            raise ConnectionLostError(f"the supervisor is shutting down: {reply.message}")
        if isinstance(reply, Error):
            error = _CHANNEL_ERRORS.get(reply.code, amqp.exceptions.ChannelError)
            raise error(f"{reply.code.upper()} - {reply.message}")
        return reply

    def _lease_link(self) -> Link | None:
        """The link to ack on: the one our deliveries came on, if still up."""
        transport = self.connection
        link = transport._link if transport is not None else None
        if link is None or not link.connected or self._tags_of != (link, link.generation):
            return None
        return link

    def _ok(self, build: Callable[[int], WireMessage]) -> BrokerOk:
        reply = self._call(build)
        assert isinstance(reply, BrokerOk), reply
        return reply

    # -- topology -------------------------------------------------------------

    def exchange_declare(
        self,
        exchange: str | None = None,
        type: str = "direct",
        durable: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        nowait: bool = False,
        passive: bool = False,
    ) -> None:
        if not exchange:
            return  # the default exchange always exists
        kind = EXCHANGE_TYPES.get(type)
        if kind is None:
            raise amqp.exceptions.NotImplemented(f"exchange type {type!r} is not supported")
        self._ok(lambda r: ExchangeDeclare(r, exchange, kind, durable, auto_delete, passive))

    def exchange_delete(self, exchange: str, if_unused: bool = False, nowait: bool = False) -> None:
        self._ok(lambda r: ExchangeDelete(r, exchange, if_unused))

    def queue_declare(
        self,
        queue: str | None = None,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
        nowait: bool = False,
        **kwargs: Any,
    ) -> Any:
        name = queue or f"amq.gen-{uuid()}"
        args = arguments or {}
        max_priority = args.get("x-max-priority")
        reply = self._ok(
            lambda r: QueueDeclare(
                r,
                name,
                passive=passive,
                durable=durable,
                exclusive=exclusive,
                auto_delete=auto_delete,
                max_priority=None if max_priority is None else int(max_priority),
                message_ttl=_seconds(args, "x-message-ttl"),
                expires=_seconds(args, "x-expires"),
            )
        )
        return queue_declare_ok_t(name, reply.message_count, reply.consumer_count)

    def queue_bind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._ok(lambda r: QueueBind(r, queue, exchange or "amq.direct", routing_key or ""))

    def queue_unbind(
        self,
        queue: str,
        exchange: str | None = None,
        routing_key: str = "",
        arguments: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._ok(lambda r: QueueUnbind(r, queue, exchange or "amq.direct", routing_key or ""))

    def queue_delete(
        self, queue: str, if_unused: bool = False, if_empty: bool = False, **kwargs: Any
    ) -> int:
        return self._ok(lambda r: QueueDelete(r, queue, if_unused, if_empty)).message_count

    def queue_purge(self, queue: str, **kwargs: Any) -> int:
        return self._ok(lambda r: QueuePurge(r, queue)).message_count

    def _size(self, queue: str) -> int:
        return self._ok(lambda r: QueueDeclare(r, queue, passive=True)).message_count

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        try:
            self._size(queue)
        except amqp.exceptions.NotFound:
            return False
        return True

    # -- publishing -----------------------------------------------------------

    def basic_publish(
        self, message: dict[str, Any], exchange: str, routing_key: str, **kwargs: Any
    ) -> None:
        exchange, routing_key = exchange or "", routing_key or ""
        if self.connection.confirm_publish:
            self._ok(lambda r: encode_publish(message, exchange, routing_key, req_id=r))
        else:
            self.link.send(encode_publish(message, exchange, routing_key))

    # -- consuming ------------------------------------------------------------

    def basic_consume(
        self,
        queue: str,
        no_ack: bool,
        callback: Callable[[Any], Any],
        consumer_tag: str | None,
        **kwargs: Any,
    ) -> str:
        tag = consumer_tag or uuid()
        self._handlers[tag] = (callback, no_ack)
        self._tag_to_queue[tag] = queue
        self._consumers.add(tag)
        try:
            self._ok(lambda r: Consume(r, self.channel_id, queue, tag, bool(no_ack)))
        except BaseException:
            self._forget_consumer(tag)
            raise
        return tag

    def basic_cancel(self, consumer_tag: str) -> None:
        if consumer_tag in self._handlers:
            self._forget_consumer(consumer_tag)
            transport = self.connection
            if transport is not None and transport.link_alive:
                self.link.send(Cancel(self.channel_id, consumer_tag))

    def _forget_consumer(self, tag: str) -> None:
        self._handlers.pop(tag, None)
        self._tag_to_queue.pop(tag, None)
        self._consumers.discard(tag)

    def basic_qos(
        self, prefetch_size: int = 0, prefetch_count: int = 0, apply_global: bool = False
    ) -> None:
        self.qos.prefetch_count = prefetch_count
        self.link.send(Qos(self.channel_id, int(prefetch_count or 0)))

    def basic_ack(self, delivery_tag: int, multiple: bool = False) -> None:
        link = self._lease_link()
        if link is None:
            log.debug("ack of delivery %s dropped: its connection was lost", delivery_tag)
            return
        link.send(Ack(self.channel_id, int(delivery_tag), multiple))

    def basic_reject(self, delivery_tag: int, requeue: bool = False) -> None:
        link = self._lease_link()
        if link is None:
            log.debug("reject of delivery %s dropped: its connection was lost", delivery_tag)
            return
        link.send(Reject(self.channel_id, int(delivery_tag), requeue))

    def basic_recover(self, requeue: bool = False) -> None:
        if not requeue:
            raise NotImplementedError("basic_recover(requeue=False) is not supported")
        self.link.send(Recover(self.channel_id))

    def basic_get(self, queue: str, no_ack: bool = False, **kwargs: Any) -> Any:
        reply = self._call(lambda r: BasicGet(r, self.channel_id, queue, no_ack))
        if not isinstance(reply, Deliver):
            return None
        self._tags_of = (self.link, self.link.generation)
        return self.Message(decode_delivery(reply), channel=self)

    def deliver(self, delivery: Deliver) -> None:
        """A pushed delivery: hand it to its consumer's callback."""
        handler = self._handlers.get(delivery.consumer_tag)
        if handler is None:  # cancelled while it was on its way: give it back
            self.link.send(Reject(self.channel_id, delivery.delivery_tag, requeue=True))
            return
        callback, _ = handler
        self._tags_of = (self.link, self.link.generation)
        callback(self.Message(decode_delivery(delivery), channel=self))

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for tag in list(self._handlers):
            self._forget_consumer(tag)
        transport = self.connection
        if transport is None:
            return
        if transport.link_alive:
            with contextlib.suppress(CodaError):
                self.link.send(ChannelClose(self.channel_id))
        transport.channels_by_id.pop(self.channel_id, None)
        transport.close_channel(self)
