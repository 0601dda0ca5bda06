"""A kombu ``Producer`` that hands each finished message to Coda instead of a broker.

``Celery.send_task`` builds the protocol-v2 message, fires
``before_task_publish``, then calls ``producer.publish(body, exchange=,
routing_key=, serializer=, compression=, headers=, **properties)``; it
touches nothing else of the producer but ``.connection`` (for
``_reraise_as_library_errors``). Passing a ``MessageProducer`` as
``producer=`` therefore yields exactly the message Celery would have sent,
with Celery's own ids, eta, expires, limits and headers, and never opens the
broker. What happens to the message is the ``sink``'s business: submit it
to a supervisor (routing), or keep it as the next attempt (``self.retry()``
inside a Coda worker).

Celery also publishes its ``task-sent`` event (``task_send_sent_event``)
through the producer it was given, after the task message. Such a message
is not a task: it goes to ``events`` (``events.EventForwarder``, to the
app's broker), never to the sink. Without ``events`` (the supervisor's beat
ticks: it must not publish from its event loop) it is not sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer

from coda.compat.kombu.properties import kept_properties

from .events import is_event
from .message import CeleryMessage

__all__ = ["MessageProducer"]

Sink = Callable[[CeleryMessage], None]
# (body, exchange, routing key, headers, serializer) of a message that is not a task
EventSink = Callable[[Any, str, "str | None", dict[str, Any], "str | None"], None]


class MessageProducer(Producer):
    """``publish()`` serializes like kombu and calls ``sink(CeleryMessage)``
    for a task message, ``events(...)`` for anything else."""

    def __init__(self, sink: Sink, events: EventSink | None = None) -> None:  # no broker
        self._sink = sink
        self._events = events
        self._connection: Connection | None = None
        self.exchange = Exchange("")
        self.routing_key = ""
        self.serializer = None
        self.compression = None
        self.auto_declare = False
        self.on_return = None
        self.__connection__ = None

    @property
    def connection(self) -> Connection:
        if self._connection is None:
            self._connection = Connection("memory://")  # only its error mapping is used
        return self._connection

    @property
    def channel(self) -> Any:
        return None

    def publish(  # the signature of kombu.Producer.publish
        self,
        body: Any,
        routing_key: str | None = None,
        delivery_mode: int | None = None,
        mandatory: bool = False,
        immediate: bool = False,
        priority: int = 0,
        content_type: str | None = None,
        content_encoding: str | None = None,
        serializer: str | None = None,
        headers: dict[str, Any] | None = None,
        compression: str | None = None,
        exchange: Any = None,
        retry: bool = False,
        retry_policy: Any = None,
        declare: Any = None,
        expiration: float | None = None,
        timeout: float | None = None,
        confirm_timeout: float | None = None,
        **properties: Any,
    ) -> None:
        headers = {} if headers is None else headers
        exchange_name = exchange.name if isinstance(exchange, Exchange) else (exchange or "")
        if is_event(headers):
            if self._events is not None:
                self._events(body, exchange_name, routing_key, headers, serializer)
            return
        payload, content_type, content_encoding = self._prepare(
            body, serializer, content_type, content_encoding, compression, headers
        )
        properties = kept_properties(properties)  # as AMQP: no signal=<Signal> from **kwargs
        properties.update(priority=priority, delivery_mode=delivery_mode)
        if expiration is not None:
            properties["expiration"] = str(round(expiration * 1000))
        properties["delivery_info"] = {"exchange": exchange_name, "routing_key": routing_key}
        message = CeleryMessage(
            headers=headers,
            properties=properties,
            body=payload if isinstance(payload, bytes) else str(payload).encode(content_encoding),
            content_type=str(content_type),
            content_encoding=str(content_encoding),
        )
        self._sink(message)

    def revive(self, channel: Any) -> None:
        """Nothing to revive: there is no channel."""

    def release(self) -> None:
        """Nothing pooled to give back."""

    close = release

    def __enter__(self) -> MessageProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        return None
