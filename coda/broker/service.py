"""Where the supervisor's connections hand broker and result messages.

The supervisor gives every ``BROKER_REQUESTS`` message of a client connection
to the broker extension (``extension``), which passes it to
``BrokerService.handle``, and tells it when the connection closes. Each
message is matched to one call on the ``Broker`` or the ``ResultStore`` and
answered when the protocol says so; a refusal (``BrokerError``) becomes an
``Error`` carrying the request id, and the connection stays up, as an AMQP
channel error would leave the connection.

Answers that promise something durable (a publish confirm, a saved result,
a chord part, a declared queue) are sent once the broker's store has
committed what the request changed (``BrokerStore.after_commit``); with
``memory://`` that is at once. Deliveries are not held back: a consumer may
receive a message before its producer has the confirm (if the supervisor
dies in between, the message may be delivered again: at least once).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..errors import BrokerError
from ..messages import Error, WireMessage
from ..supervisor.clock import Clock, LoopClock
from ..supervisor.extension import ClientPeer
from .broker import Broker
from .control import ControlCommand, ControlNode
from .messages import (
    Ack,
    BasicGet,
    BrokerOk,
    Cancel,
    ChannelClose,
    ChordPart,
    ChordStart,
    Consume,
    ControlReply,
    ControlRequest,
    ExchangeDeclare,
    ExchangeDelete,
    Publish,
    Qos,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    QueueUnbind,
    Recover,
    Reject,
    ResultFetch,
    ResultForget,
    ResultSave,
    ResultValues,
    ResultWait,
)
from .results import ResultStore
from .storage import BrokerStore, MemoryBrokerStore

__all__ = ["BrokerService"]

log = logging.getLogger("coda.broker")


class BrokerService:
    """The broker and the result store of one supervisor."""

    def __init__(
        self,
        *,
        result_ttl: float,
        clock: Clock | None = None,
        divert: Callable[[Publish, list[str], ClientPeer | None], bool] | None = None,
        store: BrokerStore | None = None,
    ) -> None:
        """``divert(message, queues, confirm_to)`` may take a message instead
        of the broker (``coda.broker.divert``: Celery messages for Coda
        workers), and then confirms it to ``confirm_to`` itself."""
        clock = clock or LoopClock()
        self.store = store if store is not None else MemoryBrokerStore()
        self.results = ResultStore(clock, default_ttl=result_ttl, store=self.store)
        self.broker = Broker(clock, on_expired=self.results.mark_revoked, store=self.store)
        self.divert = divert
        self.node: ControlNode | None = None  # the Celery node, set by the extension

    def restore(self) -> None:
        """Load what the store holds (once, before any client connects)."""
        snapshot = self.store.load()
        self.broker.restore(snapshot)
        self.results.restore(snapshot)
        if snapshot.messages or snapshot.results:
            log.info(
                "broker: restored %d messages in %d queues and %d results",
                len(snapshot.messages),
                len(snapshot.queues),
                len(snapshot.results),
            )

    def _answer(self, peer: ClientPeer, reply: WireMessage) -> None:
        """Send ``reply`` once what the request changed is durable."""
        self.store.after_commit(lambda: peer.send(reply))

    def handle(self, peer: ClientPeer, message: WireMessage) -> None:
        req_id = getattr(message, "req_id", None)
        try:
            self._dispatch(peer, message)
        except BrokerError as exc:
            if req_id is None:
                log.info("refused %s: %s", type(message).__name__, exc.message)
            else:
                peer.send(Error(code=exc.code, message=exc.message, req_id=req_id))

    def _dispatch(self, peer: ClientPeer, message: WireMessage) -> None:  # noqa: C901 - one line per type
        broker = self.broker
        match message:
            case Publish():
                self._publish(peer, message)
            case Ack():
                broker.ack(peer, message)
            case Reject():
                broker.reject(peer, message)
            case Qos():
                broker.qos(peer, message)
            case Cancel():
                broker.cancel(peer, message)
            case Recover(channel=channel):
                broker.recover(peer, channel)
            case ChannelClose(channel=channel):
                broker.close_channel(peer, channel)
            case BasicGet(req_id=req_id):
                delivery = broker.basic_get(peer, message)
                peer.send(delivery if delivery is not None else BrokerOk(req_id=req_id))
            case Consume(req_id=req_id):
                broker.consume(peer, message)
                peer.send(BrokerOk(req_id=req_id))
            case QueueDeclare(req_id=req_id):
                messages, consumers = broker.declare_queue(peer, message)
                self._answer(peer, BrokerOk(req_id, messages, consumers))
            case QueueBind(req_id=req_id):
                broker.bind(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case QueueUnbind(req_id=req_id):
                broker.unbind(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case QueuePurge(req_id=req_id):
                count = broker.purge(peer, message)
                if self.node is not None:  # and what Coda workers were to run from it
                    count += self.node.purge_queue(message.queue)
                self._answer(peer, BrokerOk(req_id, message_count=count))
            case QueueDelete(req_id=req_id):
                count = broker.delete_queue(peer, message)
                self._answer(peer, BrokerOk(req_id, message_count=count))
            case ExchangeDeclare(req_id=req_id):
                broker.declare_exchange(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case ExchangeDelete(req_id=req_id):
                broker.delete_exchange(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case _:
                self._dispatch_result(peer, message)

    def _publish(self, peer: ClientPeer, message: Publish) -> None:
        """Route (or divert) one message; confirm it when it asks to be."""
        confirm = message.req_id is not None
        if confirm and (reason := self.store.unavailable()) is not None:
            raise BrokerError(
                "store_unavailable",
                f"the supervisor cannot store messages now ({reason}); publish again later",
            )
        node, divert = self.node, self.divert
        destinations = self.broker.destinations(message)
        if divert is not None and divert(message, destinations, peer if confirm else None):
            if node is not None and message.task_id is not None:
                node.after_divert(message.task_id)  # a revoke that came first
            return  # confirmed once the job is accepted
        if node is not None and node.wants(message):
            node.on_publish(message)  # and to the stock workers' mailboxes, below
        self.broker.publish(message)
        if message.req_id is not None:
            self._answer(peer, BrokerOk(req_id=message.req_id))

    def _dispatch_result(self, peer: ClientPeer, message: WireMessage) -> None:
        results = self.results
        match message:
            case ResultSave(req_id=req_id):
                results.save(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case ResultFetch(req_id=req_id):
                self._answer(peer, ResultValues(req_id=req_id, entries=results.fetch(message)))
            case ResultWait():
                results.wait(peer, message)
            case ResultForget(req_id=req_id):
                results.forget(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case ChordStart(req_id=req_id):
                results.chord_start(message)
                self._answer(peer, BrokerOk(req_id=req_id))
            case ChordPart():
                self._answer(peer, results.chord_part(message))
            case ControlRequest():
                self._answer(peer, self._control(message))
            case _:
                raise BrokerError("not_allowed", f"unexpected {type(message).__name__}")

    def _control(self, message: ControlRequest) -> ControlReply:
        if self.node is None:
            raise BrokerError("not_allowed", "this supervisor has no Celery node")
        command = ControlCommand(
            method=message.method,
            arguments=message.arguments,
            destination=message.destination,
            pattern=message.pattern,
            matcher=message.matcher,
        )
        return ControlReply(message.req_id, self.node.name, self.node.request(command))

    def disconnected(self, peer: ClientPeer) -> None:
        self.broker.disconnected(peer)
        self.results.disconnected(peer)

    def statistics(self) -> dict[str, Any]:
        stats = {**self.broker.statistics(), "results": self.results.statistics()}
        if self.node is not None:
            stats["celery_node"] = self.node.statistics()
        return stats

    def close(self) -> None:
        self.store.close()
