"""``coda://``: a kombu transport whose broker is the Coda supervisor.

Unlike kombu's virtual transports (Redis, SQS, ...), nothing here emulates a
broker on the client side: exchanges, bindings, queues, the lease of every
unacked message and prefetch credit all live in the supervisor
(``coda.broker``); each channel method is one frame
(``channel.py``). Deliveries are *pushed* by the supervisor against each
channel's prefetch credit and dispatched when the socket is readable:
through ``register_with_event_loop`` (Celery's worker hub: no polling, an
idle worker costs nothing) or the blocking ``drain_events``.

Unacked messages are never restored by the client (``do_restore = False``):
when a connection drops, even by SIGKILL, the supervisor requeues its leases
at the head of their queues with ``delivery_info.redelivered = True``.

Publisher confirms: with the transport option ``confirm_publish`` (Celery's
``broker_transport_options``), on by default, ``basic_publish`` returns once
the supervisor has committed the message to its store, and raises a
connection error if the connection is lost first, so kombu's retry policy
(Celery's ``task_publish_retry_policy``) publishes it again on a new
connection: a publish that returned is never lost. The price is one round
trip and one group commit per publish (``bench/broker.py`` measures it);
``confirm_publish=False`` sends and forgets, as py-amqp does by default.

Reconnecting: a lost connection is never reopened behind kombu's back.
kombu (``Connection.ensure``, Celery's consumer) opens a new one, and the
channels of the old one turn stale: their acks and rejects are dropped (the
supervisor requeues those messages, redelivered, as for any dead connection),
as kombu's Redis transport ignores acks it can no longer send.
"""

from __future__ import annotations

import os
import time
from typing import Any

import amqp.exceptions
from kombu.connection import Connection
from kombu.transport import virtual

from ...broker.messages import Deliver
from ...errors import ConnectionLostError, ProtocolError
from ...messages import Error
from .channel import Channel
from .link import Link, tls_context

__all__ = ["DEFAULT_PORT", "Channel", "Transport"]

DEFAULT_PORT = 42069


class Transport(virtual.Transport):
    """kombu transport for ``coda://host:port`` (the password is the token)."""

    Channel = Channel
    driver_type = "coda"
    driver_name = "coda"
    # kombu's base classes declare these as None, 1.0 and one-element tuples
    default_port = DEFAULT_PORT  # type: ignore[assignment]
    polling_interval = None  # type: ignore[assignment]  # pushed, never polled
    implements = virtual.Transport.implements.extend(
        asynchronous=True,
        exchange_type=frozenset({"direct", "topic", "fanout"}),
        heartbeats=False,
    )
    connection_errors = (  # type: ignore[assignment]
        *virtual.Transport.connection_errors,
        OSError,
        ConnectionLostError,
        ProtocolError,
    )
    channel_errors = (  # type: ignore[assignment]
        *virtual.Transport.channel_errors,
        amqp.exceptions.ChannelError,
    )
    # kombu's ensure(): reconnect and retry on these, report channel errors as they are
    recoverable_connection_errors = connection_errors
    recoverable_channel_errors = ()

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)  # type: ignore[no-untyped-call]  # kombu's, unannotated
        self.channels_by_id: dict[int, Channel] = {}
        options = getattr(client, "transport_options", None) or {}
        self.confirm_publish = bool(options.get("confirm_publish", True))
        self._link: Link | None = None
        self._dispatching = False
        self._loop: Any = None

    # -- connection -------------------------------------------------------------

    @property
    def link(self) -> Link:
        if self._link is None:
            raise ConnectionLostError("the coda:// connection is closed")
        return self._link

    @property
    def link_alive(self) -> bool:
        return self._link is not None and self._link.connected

    @property
    def _kombu_connection(self) -> Connection:
        """The ``kombu.Connection`` that made this transport; its ``close()`` sets it to None."""
        client: Connection | None = self.client
        if client is None:
            raise ConnectionLostError(
                "this coda:// transport's kombu Connection was closed; open a new Connection"
            )
        return client

    def establish_connection(self) -> Transport:
        client = self._kombu_connection
        options: dict[str, Any] = client.transport_options or {}
        token = client.password or options.get("token") or os.environ.get("CODA_TOKEN", "")
        if options.get("unix_socket"):
            address = str(options["unix_socket"])
        else:
            address = f"{client.hostname or '127.0.0.1'}:{client.port or DEFAULT_PORT}"
        timeout = client.connect_timeout or 10.0
        tls = tls_context(client.ssl)
        link = Link(address, token=token, connect_timeout=timeout, tls=tls, reconnect=False)
        link.connect()
        self._link = link
        return super().establish_connection()  # type: ignore[no-untyped-call,no-any-return]

    def close_connection(self, connection: Any) -> None:
        try:
            super().close_connection(connection)  # type: ignore[no-untyped-call]
        finally:
            if self._link is not None:
                self._link.close()
                self._link = None

    def verify_connection(self, connection: Any) -> bool:
        return self.link_alive

    def driver_version(self) -> str:
        return "1"

    # -- events -------------------------------------------------------------------

    def drain_events(self, connection: Any, timeout: float | None = None, **kwargs: Any) -> None:
        """Dispatch at least one delivery, or raise ``socket.timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._dispatch_events():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError()
            self.link.wait_readable(remaining)

    def register_with_event_loop(self, connection: Any, loop: Any) -> None:
        self._loop = loop
        fd = self.link.fileno()
        loop.add_reader(fd, self._on_readable, fd)
        loop.on_tick.add(self._on_tick)

    def unregister_from_event_loop(self, connection: Any, loop: Any) -> None:
        loop.on_tick.discard(self._on_tick)
        if self._link is not None and self._link.connected:
            loop.remove_reader(self._link.fileno())

    def _on_readable(self, fileno: int) -> None:
        """The hub's reader callback (not kombu's ``on_readable(connection, loop)``,
        which only the base ``register_with_event_loop`` calls)."""
        self.link.read_available()
        self._dispatch_events()

    def _on_tick(self) -> None:
        """Deliveries read while waiting for an answer are dispatched here."""
        if self._link is not None and self._link.events:
            self._dispatch_events()

    def _dispatch_events(self) -> bool:
        """Dispatch buffered deliveries in arrival order; True if any."""
        if self._dispatching or self._link is None:
            return False
        self._dispatching = True
        delivered = False
        try:
            events = self._link.events
            while events:
                event = events.popleft()
                if isinstance(event, Deliver):
                    channel = self.channels_by_id.get(event.channel)
                    if channel is not None:
                        channel.deliver(event)
                        delivered = True
                elif isinstance(event, Error):
                    raise ConnectionLostError(f"the supervisor says: {event.message}")
        finally:
            self._dispatching = False
        return delivered
