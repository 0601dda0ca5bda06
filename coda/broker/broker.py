"""The supervisor as a message broker for kombu and Celery (AMQP's model).

Theory of operation. Publishers send ``Publish``; the broker routes it through
its topology (``topology``: exchanges, bindings, queues) to queues, or holds it
until its ETA. Consumers are (connection, channel, consumer tag) triples;
a channel has *prefetch credit*: it may hold at most ``prefetch_count``
unacknowledged deliveries (0: no limit). Deliveries are *pushed*: whenever a
message becomes ready or credit frees up, the broker sends ``Deliver`` at
once, so an idle consumer costs nothing and nobody polls. One invariant makes
this simple and fair: after every operation, no consumer with credit is
subscribed to a queue that has a ready message.

The lease ledger lives with the channel (``channels``), not the consumer:
every delivery to an acking consumer is a lease (channel, delivery tag)
until it is acked or rejected. When a channel closes or its connection drops
(a worker killed with SIGKILL), its leases go back to the *front* of their
queues with ``redelivered`` set, at their places by arrival. There is no
visibility timeout: a long task is never delivered twice while its consumer
lives.

ETA messages wait in a heap with one timer (``held``); expired
messages (per-message TTL, Celery's ``expires``, a queue's message TTL) are
dropped when they reach the front of a queue and reported to ``on_expired``
with their task id. No I/O: peers are written to through ``ClientPeer.send``
and time comes from a ``Clock``.

Durability: what changes in persistent messages (``records``) and in the
durable topology is told to the broker's store (``storage``) as it happens,
and ``restore`` rebuilds it all when the supervisor starts.
"""

from __future__ import annotations

import itertools
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import BrokerError
from ..supervisor.clock import Clock
from ..supervisor.extension import ClientPeer
from .channels import ChannelState, ConnectionTable, Consumer, Lease
from .held import HeldMessages
from .messages import (
    Ack,
    BasicGet,
    Cancel,
    Consume,
    Deliver,
    ExchangeDeclare,
    ExchangeDelete,
    Publish,
    Qos,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueuePurge,
    QueueUnbind,
    Reject,
)
from .queues import BrokerQueue, Envelope
from .records import MessageRecords, restore_messages
from .storage import BrokerSnapshot, BrokerStore, MemoryBrokerStore
from .topology import Topology

__all__ = ["Broker"]

log = logging.getLogger("coda.broker")


def _earliest(*times: float | None) -> float | None:
    known = [t for t in times if t is not None]
    return min(known) if known else None


class Broker:
    def __init__(
        self,
        clock: Clock,
        on_expired: Callable[[str], None] | None = None,
        store: BrokerStore | None = None,
    ) -> None:
        self.clock = clock
        self.store = store if store is not None else MemoryBrokerStore()
        self._records = MessageRecords(self.store)
        self.topology = Topology(clock, self.store)
        self.queues = self.topology.queues  # by name (the same dict)
        self.counts: Counter[str] = Counter()
        self.unroutable: Counter[str] = Counter()  # by exchange: nobody listens there
        self._on_expired = on_expired
        self._connections = ConnectionTable()
        self._seq = itertools.count(1)
        self._held = HeldMessages(clock, self._release_held)

    # -- topology (``Topology``; exclusivity is per connection) ----------------

    def declare_exchange(self, msg: ExchangeDeclare) -> None:
        self.topology.declare_exchange(msg)

    def delete_exchange(self, msg: ExchangeDelete) -> None:
        self.topology.delete_exchange(msg)

    def declare_queue(self, peer: ClientPeer, msg: QueueDeclare) -> tuple[int, int]:
        """Create the queue unless it exists; return (messages, consumers)."""
        creates_exclusive = msg.exclusive and not msg.passive and msg.queue not in self.queues
        owner = self._connections.ensure(peer) if creates_exclusive else None
        queue = self.topology.declare_queue(msg, asker=self._connections.get(peer), owner=owner)
        return len(queue), len(queue.consumers)

    def bind(self, msg: QueueBind) -> None:
        self.topology.bind(msg)

    def unbind(self, msg: QueueUnbind) -> None:
        self.topology.unbind(msg)

    def delete_queue(self, peer: ClientPeer, msg: QueueDelete) -> int:
        return self.topology.delete_queue(msg, self._connections.get(peer))

    def purge(self, peer: ClientPeer, msg: QueuePurge) -> int:
        queue = self.topology.queue(msg.queue)
        self._check_exclusive(queue, peer)
        for envelope in [*queue.envelopes(), *self._held.held_in(queue)]:
            self._records.gone(envelope)
        count = queue.purge()
        self.counts["purged"] += count
        return count

    def size(self, name: str) -> int:
        return len(self.topology.queue(name))

    def held_messages(self) -> Iterator[tuple[BrokerQueue, Envelope, float]]:
        """The messages held until their ETA, soonest first (``inspect scheduled``)."""
        return self._held.entries()

    # -- publishing ---------------------------------------------------------

    def destinations(self, msg: Publish) -> list[str]:
        """The existing queues a message would be routed to."""
        return self.topology.destinations(msg)

    def publish(self, msg: Publish) -> int:
        """Route one message; return the number of queues it went to."""
        now = self.clock.time()
        routed = 0
        for name in self.destinations(msg):
            queue = self.queues[name]
            expires_at = _earliest(
                msg.expires,
                None if msg.ttl is None else now + msg.ttl,
                None if queue.message_ttl is None else now + queue.message_ttl,
            )
            envelope = Envelope(msg.body, msg.priority, expires_at, msg.task_id)
            if msg.persistent and queue.persistent:
                self._records.put(queue, envelope, msg.eta)
            if msg.eta is not None and msg.eta > now:
                self._hold(queue, envelope, msg.eta)
            else:
                self._enqueue(queue, envelope)
            routed += 1
        if routed:
            self.counts["published"] += 1
        else:  # worker heartbeats, events nobody consumes: counted, not logged
            self.counts["unroutable"] += 1
            self.unroutable[msg.exchange] += 1
        return routed

    def restore(self, snapshot: BrokerSnapshot) -> None:
        """Rebuild the durable topology and messages a previous supervisor
        left in the store (once, before any client connects)."""
        self.topology.restore(snapshot)
        restored, last = restore_messages(snapshot, self.queues, self._held, self.clock.time())
        self.counts["restored"] += restored
        self._seq = itertools.count(last + 1)

    def _enqueue(self, queue: BrokerQueue, envelope: Envelope) -> None:
        envelope.seq = next(self._seq)
        queue.push(envelope)
        self._dispatch_queue(queue)

    def _hold(self, queue: BrokerQueue, envelope: Envelope, due: float) -> None:
        self._held.hold(queue, envelope, due)
        self.counts["held"] += 1

    def _release_held(self, due: list[tuple[BrokerQueue, Envelope]]) -> None:
        """Messages whose ETA came join their queues, in due order."""
        touched: dict[int, BrokerQueue] = {}
        for queue, envelope in due:
            envelope.seq = next(self._seq)
            queue.push(envelope)
            touched[id(queue)] = queue
        for queue in touched.values():
            self._dispatch_queue(queue)

    # -- consuming ----------------------------------------------------------

    def consume(self, peer: ClientPeer, msg: Consume) -> None:
        queue = self.topology.queue(msg.queue)
        self._check_exclusive(queue, peer)
        channel = self._connections.channel(peer, msg.channel)
        if msg.consumer_tag in channel.consumers:
            raise BrokerError(
                "not_allowed", f"consumer tag {msg.consumer_tag!r} is already used on this channel"
            )
        consumer = Consumer(channel, msg.consumer_tag, queue, msg.no_ack)
        channel.consumers[msg.consumer_tag] = consumer
        queue.consumers.append(consumer)
        queue.had_consumers = True
        queue.last_used = self.clock.time()
        self._dispatch_channel(channel)

    def cancel(self, peer: ClientPeer, msg: Cancel) -> None:
        channel = self._connections.existing_channel(peer, msg.channel)
        consumer = channel.consumers.pop(msg.consumer_tag, None) if channel else None
        if consumer is not None:
            self._remove_consumer(consumer)

    def qos(self, peer: ClientPeer, msg: Qos) -> None:
        channel = self._connections.channel(peer, msg.channel)
        channel.prefetch = max(0, msg.prefetch_count)
        self._dispatch_channel(channel)

    def ack(self, peer: ClientPeer, msg: Ack) -> None:
        channel = self._connections.existing_channel(peer, msg.channel)
        if channel is None:
            return
        tags = (
            [t for t in channel.unacked if t <= msg.delivery_tag]
            if msg.multiple
            else [msg.delivery_tag]
        )
        for tag in tags:
            lease = channel.unacked.pop(tag, None)
            if lease is None:
                log.info("ack of unknown delivery tag %s on channel %s", tag, msg.channel)
            else:
                self._records.gone(lease.envelope)
                self.counts["acked"] += 1
        self._dispatch_channel(channel)

    def reject(self, peer: ClientPeer, msg: Reject) -> None:
        channel = self._connections.existing_channel(peer, msg.channel)
        lease = channel.unacked.pop(msg.delivery_tag, None) if channel else None
        if channel is None or lease is None:
            return
        if msg.requeue:
            self._requeue([lease])
        else:
            self._records.gone(lease.envelope)
            self.counts["rejected"] += 1
        self._dispatch_channel(channel)

    def recover(self, peer: ClientPeer, channel_id: int) -> None:
        channel = self._connections.existing_channel(peer, channel_id)
        if channel is not None:
            leases = list(channel.unacked.values())
            channel.unacked.clear()
            self._requeue(leases)

    def basic_get(self, peer: ClientPeer, msg: BasicGet) -> Deliver | None:
        queue = self.topology.queue(msg.queue)
        self._check_exclusive(queue, peer)
        now = self.clock.time()
        queue.last_used = now
        envelope = queue.pop(now, self._expired)
        if envelope is None:
            return None
        channel = self._connections.channel(peer, msg.channel)
        tag = channel.lease(queue, envelope, no_ack=msg.no_ack)
        self._delivered(envelope, msg.no_ack)
        return Deliver(
            channel=channel.id,
            consumer_tag="",
            delivery_tag=tag,
            queue=queue.name,
            body=envelope.body,
            redelivered=envelope.redelivered,
            req_id=msg.req_id,
        )

    def close_channel(self, peer: ClientPeer, channel_id: int) -> None:
        connection = self._connections.get(peer)
        channel = connection.channels.pop(channel_id, None) if connection else None
        if channel is not None:
            self._drop_channel(channel)

    def disconnected(self, peer: ClientPeer) -> None:
        """The peer is gone: requeue its leases, stop its consumers."""
        connection = self._connections.pop(peer)
        if connection is None:
            return
        for channel in list(connection.channels.values()):
            self._drop_channel(channel)
        connection.channels.clear()
        for queue in list(self.queues.values()):
            if queue.exclusive_owner is connection:
                self.topology.delete(queue)

    # -- status -------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        unacked: Counter[str] = Counter()
        for connection in self._connections:
            for channel in connection.channels.values():
                unacked.update(lease.queue for lease in channel.unacked.values())
        return {
            "queues": {
                name: {
                    "ready": queue.ready,
                    "held": queue.held,
                    "unacked": unacked[name],
                    "consumers": len(queue.consumers),
                }
                for name, queue in sorted(self.queues.items())
            },
            "exchanges": len(self.topology.exchanges.exchanges),
            "connections": len(self._connections),
            "counts": dict(self.counts),
            "unroutable": dict(self.unroutable),
            "store": self.store.statistics(),
        }

    # -- internals ----------------------------------------------------------

    def _dispatch_queue(self, queue: BrokerQueue) -> None:
        """Give the queue's ready messages to its consumers that have credit."""
        if not queue.consumers:
            return
        now = self.clock.time()
        while queue.head(now, self._expired) is not None:
            consumer = queue.next_consumer(lambda c: c.channel.has_credit())
            if consumer is None:
                return
            envelope = queue.pop(now, self._expired)
            assert envelope is not None
            self._deliver(consumer, envelope)

    def _dispatch_channel(self, channel: ChannelState) -> None:
        """Fill the channel's credit, oldest message first across its queues."""
        now = self.clock.time()
        while channel.has_credit():
            best: tuple[Consumer, Envelope] | None = None
            for consumer in channel.consumers.values():
                head = consumer.queue.head(now, self._expired)
                if head is not None and (best is None or head.seq < best[1].seq):
                    best = (consumer, head)
            if best is None:
                return
            consumer, _ = best
            envelope = consumer.queue.pop(now, self._expired)
            assert envelope is not None
            self._deliver(consumer, envelope)

    def _deliver(self, consumer: Consumer, envelope: Envelope) -> None:
        channel = consumer.channel
        queue = consumer.queue
        tag = channel.lease(queue, envelope, no_ack=consumer.no_ack)
        self._delivered(envelope, consumer.no_ack)
        queue.last_used = self.clock.time()
        channel.connection.peer.send(
            Deliver(
                channel=channel.id,
                consumer_tag=consumer.tag,
                delivery_tag=tag,
                queue=queue.name,
                body=envelope.body,
                redelivered=envelope.redelivered,
            )
        )

    def _delivered(self, envelope: Envelope, no_ack: bool) -> None:
        self.counts["delivered"] += 1
        self._records.delivered(envelope, no_ack)

    def _requeue(self, leases: list[Lease]) -> None:
        """Back into their queues, each where it was by arrival (as RabbitMQ)."""
        touched: dict[int, BrokerQueue] = {}
        for lease in leases:
            queue = self.queues.get(lease.queue)
            if queue is None:
                continue
            lease.envelope.redelivered = True
            self._records.released(lease.envelope)
            queue.requeue(lease.envelope)
            touched[id(queue)] = queue
            self.counts["requeued"] += 1
        for queue in touched.values():
            self._dispatch_queue(queue)

    def _drop_channel(self, channel: ChannelState) -> None:
        consumers = list(channel.consumers.values())
        channel.consumers.clear()
        leases = list(channel.unacked.values())
        channel.unacked.clear()
        channel.closed = True  # no credit: nothing more goes to it
        for consumer in consumers:
            self._remove_consumer(consumer)
        self._requeue(leases)

    def _remove_consumer(self, consumer: Consumer) -> None:
        queue = consumer.queue
        if consumer in queue.consumers:
            queue.consumers.remove(consumer)
        queue.last_used = self.clock.time()
        if queue.consumers or self.queues.get(queue.name) is not queue:
            return
        if queue.auto_delete and queue.had_consumers:
            self.topology.delete(queue)
        else:
            self.topology.arm_expiry(queue)

    def _expired(self, envelope: Envelope) -> None:
        self.counts["expired"] += 1
        self._records.gone(envelope)
        if envelope.task_id is not None and self._on_expired is not None:
            self._on_expired(envelope.task_id)

    def _check_exclusive(self, queue: BrokerQueue, peer: ClientPeer) -> None:
        self.topology.check_exclusive(queue, self._connections.get(peer))
