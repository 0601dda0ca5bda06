"""The typed messages of the supervisor's broker and result store.

These are the frames a kombu transport exchanges with the supervisor when the
supervisor stands in for RabbitMQ or Redis, and the frames of the ``coda://``
Celery result backend: AMQP's model (exchanges, queues, bindings, consumers
with prefetch credit, delivery tags) in typed, frozen structs. They share the
wire format of ``coda.messages`` (``WireMessage``: a MessagePack array tagged
by its first element) but not its ``Message`` union: the core protocol knows
none of them. The supervisor's client connections decode them because the
broker extension declares ``BROKER_REQUESTS``; a client decodes them with
``CLIENT_CODEC``.

Message bodies stay opaque bytes: the transport encodes the whole kombu
message (body, headers, properties) once, and what the supervisor needs to
route and hold it (priority, time to live, ETA, expiry, Celery task id) rides
beside it as typed fields, parsed by the client at the boundary.

Who sends what::

    client → supervisor  ExchangeDeclare, ExchangeDelete, QueueDeclare, QueueBind,
                         QueueUnbind, QueueDelete, QueuePurge, Consume, BasicGet
                         (each answered by BrokerOk or Error), Publish (answered
                         when it has a req_id), Cancel, Qos, Ack, Reject, Recover,
                         ChannelClose (never answered)
    supervisor → client  Deliver (pushed against credit, or the answer to BasicGet)
    client → supervisor  ResultSave, ResultForget, ResultFetch, ResultWait,
                         ChordStart, ChordPart
    supervisor → client  ResultValues, ChordReply, BrokerOk
    client → supervisor  ControlRequest (Celery remote control, from install())
    supervisor → client  ControlReply

Times are seconds: ``ttl`` relative to arrival, ``eta`` and ``expires``
absolute (wall clock, since the epoch).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from ..messages import Error, Welcome, WireMessage
from ..protocol import MessageCodec

__all__ = [
    "BROKER_REPLIES",
    "BROKER_REQUESTS",
    "CLIENT_CODEC",
    "Ack",
    "BasicGet",
    "BrokerOk",
    "Cancel",
    "ChannelClose",
    "ChordPart",
    "ChordReply",
    "ChordStart",
    "Consume",
    "ControlReply",
    "ControlRequest",
    "Deliver",
    "ExchangeDeclare",
    "ExchangeDelete",
    "Publish",
    "Qos",
    "QueueBind",
    "QueueDeclare",
    "QueueDelete",
    "QueuePurge",
    "QueueUnbind",
    "Recover",
    "Reject",
    "ResultEntry",
    "ResultFetch",
    "ResultForget",
    "ResultSave",
    "ResultValues",
    "ResultWait",
]

ExchangeType = Literal["direct", "topic", "fanout"]
ResultKind = Literal["task", "group"]


class _BrokerMessage(WireMessage, frozen=True):
    pass


# -- topology: answered by BrokerOk (or Error) --------------------------------


class ExchangeDeclare(_BrokerMessage, tag="exchange_declare", frozen=True):
    req_id: int
    exchange: str
    type: ExchangeType = "direct"
    durable: bool = False
    auto_delete: bool = False
    passive: bool = False


class ExchangeDelete(_BrokerMessage, tag="exchange_delete", frozen=True):
    req_id: int
    exchange: str
    if_unused: bool = False


class QueueDeclare(_BrokerMessage, tag="queue_declare", frozen=True):
    """AMQP's queue.declare; ``message_ttl`` and ``expires`` are kombu's
    ``x-message-ttl``/``x-expires`` in seconds, ``max_priority`` its
    ``x-max-priority`` (priorities are 0-9 whatever it says)."""

    req_id: int
    queue: str
    passive: bool = False
    durable: bool = False
    exclusive: bool = False
    auto_delete: bool = False
    max_priority: int | None = None
    message_ttl: float | None = None
    expires: float | None = None


class QueueBind(_BrokerMessage, tag="queue_bind", frozen=True):
    req_id: int
    queue: str
    exchange: str
    routing_key: str = ""


class QueueUnbind(_BrokerMessage, tag="queue_unbind", frozen=True):
    req_id: int
    queue: str
    exchange: str
    routing_key: str = ""


class QueueDelete(_BrokerMessage, tag="queue_delete", frozen=True):
    req_id: int
    queue: str
    if_unused: bool = False
    if_empty: bool = False


class QueuePurge(_BrokerMessage, tag="queue_purge", frozen=True):
    req_id: int
    queue: str


class BrokerOk(_BrokerMessage, tag="broker_ok", frozen=True):
    """Success of a topology request, with the queue's counts where they
    apply; the answer to a ``BasicGet`` that found the queue empty."""

    req_id: int
    message_count: int = 0
    consumer_count: int = 0


# -- messages in ---------------------------------------------------------------


class Publish(_BrokerMessage, tag="publish", frozen=True):
    """One message to route. Without ``req_id`` it is never answered (AMQP's
    basic.publish); with one, the supervisor confirms it with ``BrokerOk``
    once the message is durable (committed to the store, or handed to Coda
    workers as a job), or refuses it with ``Error`` (publisher confirms).

    ``body`` is the whole kombu message, encoded by the transport. ``eta``
    holds it in the supervisor until then; past ``expires`` or ``ttl`` it is
    dropped instead of delivered, and ``task_id`` (Celery's) is then marked
    revoked in the result store. ``task`` is Celery's task name, for the
    supervisor's choice of handing the message to Coda workers instead.
    ``persistent`` is False for kombu's transient delivery mode: such a
    message is kept in memory only, even in a durable queue.
    """

    exchange: str
    routing_key: str
    body: bytes
    priority: int = 0
    ttl: float | None = None
    eta: float | None = None
    expires: float | None = None
    task_id: str | None = None
    task: str | None = None
    persistent: bool = True
    req_id: int | None = None


# -- consuming -----------------------------------------------------------------


class Consume(_BrokerMessage, tag="consume", frozen=True):
    req_id: int
    channel: int
    queue: str
    consumer_tag: str
    no_ack: bool = False


class Cancel(_BrokerMessage, tag="cancel", frozen=True):
    channel: int
    consumer_tag: str


class Qos(_BrokerMessage, tag="qos", frozen=True):
    """Prefetch credit of a channel: unacked deliveries it may hold (0: no limit)."""

    channel: int
    prefetch_count: int


class Ack(_BrokerMessage, tag="ack", frozen=True):
    channel: int
    delivery_tag: int
    multiple: bool = False


class Reject(_BrokerMessage, tag="reject", frozen=True):
    channel: int
    delivery_tag: int
    requeue: bool = False


class Recover(_BrokerMessage, tag="recover", frozen=True):
    """Requeue every unacked delivery of the channel (basic.recover)."""

    channel: int


class BasicGet(_BrokerMessage, tag="basic_get", frozen=True):
    req_id: int
    channel: int
    queue: str
    no_ack: bool = False


class ChannelClose(_BrokerMessage, tag="channel_close", frozen=True):
    """Forget the channel: its consumers stop, its unacked deliveries are requeued."""

    channel: int


class Deliver(_BrokerMessage, tag="deliver", frozen=True):
    """A message for a consumer (``req_id`` is None) or the answer to a
    ``BasicGet`` (``consumer_tag`` is empty). ``delivery_tag`` names the
    lease until it is acked or rejected."""

    channel: int
    consumer_tag: str
    delivery_tag: int
    queue: str
    body: bytes
    redelivered: bool = False
    req_id: int | None = None


# -- results -------------------------------------------------------------------


class ResultSave(_BrokerMessage, tag="result_save", frozen=True):
    """Store a task's state (or a saved group) as opaque bytes, for ``ttl``
    seconds (the supervisor's default when None). A SUCCESS is never
    overwritten by another state."""

    req_id: int
    id: str
    value: bytes
    state: str
    kind: ResultKind = "task"
    ttl: float | None = None


class ResultForget(_BrokerMessage, tag="result_forget", frozen=True):
    req_id: int
    id: str
    kind: ResultKind = "task"


class ResultFetch(_BrokerMessage, tag="result_fetch", frozen=True):
    """What is stored now for each id, in order."""

    req_id: int
    ids: list[str]
    kind: ResultKind = "task"


class ResultWait(_BrokerMessage, tag="result_wait", frozen=True):
    """Answer once the task is ready (SUCCESS, FAILURE or REVOKED): a push,
    not a poll. The client enforces its own timeout."""

    req_id: int
    id: str


class ResultEntry(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """One stored state; ``value`` None with state REVOKED and ``note``
    ``expired`` means the broker dropped the message past its expiry."""

    id: str
    state: str | None = None
    value: bytes | None = None
    note: str = ""


class ResultValues(_BrokerMessage, tag="result_values", frozen=True):
    req_id: int
    entries: list[ResultEntry]


class ChordStart(_BrokerMessage, tag="chord_start", frozen=True):
    """A chord's header is about to be sent: join these task ids, in order."""

    req_id: int
    group_id: str
    members: list[str]
    ttl: float | None = None


class ChordPart(_BrokerMessage, tag="chord_part", frozen=True):
    """A header task finished; ``value`` is its encoded outcome."""

    req_id: int
    group_id: str
    task_id: str
    value: bytes


class ChordReply(_BrokerMessage, tag="chord_reply", frozen=True):
    """``complete`` is True exactly once per chord, for the part that closed
    it, with every member's value in header order; ``unknown`` when no such
    chord is held (never started here, or expired)."""

    req_id: int
    complete: bool = False
    unknown: bool = False
    values: list[bytes] = []


# -- Celery's remote control, without a pidbox ----------------------------------


class ControlRequest(_BrokerMessage, tag="control_request", frozen=True):
    """A Celery remote-control command for the supervisor's Celery node
    (``coda.broker.control``), sent directly by ``install()``'s router when
    the app's broker is not this supervisor: ``method`` and ``arguments`` as
    in a pidbox broadcast. Answered by ``ControlReply``."""

    req_id: int
    method: str
    arguments: dict[str, Any] = {}
    destination: list[str] | None = None
    pattern: str | None = None
    matcher: str | None = None


class ControlReply(_BrokerMessage, tag="control_reply", frozen=True):
    """The node's answer (``reply`` None when the command named other nodes)."""

    req_id: int
    node: str
    reply: Any = None


BROKER_REQUESTS: tuple[type[WireMessage], ...] = (
    ExchangeDeclare,
    ExchangeDelete,
    QueueDeclare,
    QueueBind,
    QueueUnbind,
    QueueDelete,
    QueuePurge,
    Publish,
    Consume,
    Cancel,
    Qos,
    Ack,
    Reject,
    Recover,
    BasicGet,
    ChannelClose,
    ResultSave,
    ResultForget,
    ResultFetch,
    ResultWait,
    ChordStart,
    ChordPart,
    ControlRequest,
)
"""Messages a client connection may send to the supervisor's broker."""

BROKER_REPLIES: tuple[type[WireMessage], ...] = (
    BrokerOk,
    Deliver,
    ResultValues,
    ChordReply,
    ControlReply,
)
"""Messages the broker sends to a client connection."""

CLIENT_CODEC: MessageCodec[WireMessage] = MessageCodec((Welcome, Error, *BROKER_REPLIES))
"""What a client of the broker (a kombu transport, the result backend) decodes:
the core's handshake answer and refusals, and the broker's replies."""
