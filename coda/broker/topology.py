"""The broker's topology: exchanges, queues and bindings, and how long queues live.

What AMQP declares rather than sends: exchanges (``exchanges``), queues
(``queues``) and the bindings between them, with the rules that end a
queue's life: an *exclusive* queue belongs to the connection that declared it
and goes with it; an *auto-delete* queue goes when its last consumer does;
a queue with ``x-expires`` goes once nobody has used it for that long (one
timer per queue, armed only while it is unused). ``Broker`` owns one
``Topology`` and tells it which connection asks, since only the broker
knows connections.

Durable exchanges, persistent queues (``BrokerQueue.persistent``) and the
bindings between them are written to the broker's store as they change, and
``restore`` rebuilds them when the supervisor starts.
"""

from __future__ import annotations

from ..errors import BrokerError
from ..supervisor.clock import Clock
from .channels import ConnectionState
from .exchanges import EXCHANGE_TYPES, PREDECLARED, Exchange, ExchangeTable
from .messages import (
    ExchangeDeclare,
    ExchangeDelete,
    Publish,
    QueueBind,
    QueueDeclare,
    QueueDelete,
    QueueUnbind,
)
from .queues import MAX_PRIORITY, BrokerQueue
from .storage import BrokerSnapshot, BrokerStore, StoredBinding, StoredExchange, StoredQueue

__all__ = ["Topology"]


class Topology:
    def __init__(self, clock: Clock, store: BrokerStore) -> None:
        self.clock = clock
        self.store = store
        self.exchanges = ExchangeTable()
        self.queues: dict[str, BrokerQueue] = {}

    def restore(self, snapshot: BrokerSnapshot) -> None:
        for stored in snapshot.exchanges:
            kind = EXCHANGE_TYPES.get(stored.type, "direct")
            exchange = Exchange(stored.name, kind, durable=True, auto_delete=stored.auto_delete)
            self.exchanges.exchanges[stored.name] = exchange
        for stored_queue in snapshot.queues:
            queue = self.queues[stored_queue.name] = BrokerQueue(
                stored_queue.name,
                durable=True,
                max_priority=stored_queue.max_priority,
                message_ttl=stored_queue.message_ttl,
                expires=stored_queue.expires,
            )
            queue.last_used = self.clock.time()
            self.arm_expiry(queue)
        for binding in snapshot.bindings:
            found = self.exchanges.exchanges.get(binding.exchange)
            if found is not None and binding.queue in self.queues:
                found.bind(binding.queue, binding.key)

    def _stored_binding(self, exchange: str, queue: str, key: str) -> StoredBinding | None:
        """The binding as the store keeps it, if both its ends are stored."""
        found = self.exchanges.exchanges.get(exchange)
        target = self.queues.get(queue)
        if found is None or target is None or not (found.durable and target.persistent):
            return None
        return StoredBinding(exchange, queue, key)

    # -- exchanges and bindings -------------------------------------------------

    def declare_exchange(self, msg: ExchangeDeclare) -> None:
        new = msg.exchange not in self.exchanges.exchanges
        exchange = self.exchanges.declare(
            msg.exchange,
            msg.type,
            durable=msg.durable,
            auto_delete=msg.auto_delete,
            passive=msg.passive,
        )
        if new and exchange.durable:
            self.store.save_exchange(
                StoredExchange(exchange.name, exchange.type, exchange.auto_delete)
            )

    def delete_exchange(self, msg: ExchangeDelete) -> None:
        exchange = self.exchanges.exchanges.get(msg.exchange)
        self.exchanges.delete(msg.exchange, if_unused=msg.if_unused)
        if exchange is not None and exchange.durable and exchange.name not in PREDECLARED:
            self.store.delete_exchange(exchange.name)

    def bind(self, msg: QueueBind) -> None:
        self.queue(msg.queue)
        if not msg.exchange:
            raise BrokerError("access_refused", "queues cannot be bound to the default exchange")
        exchange = self.exchanges.get(msg.exchange)
        if (msg.routing_key, msg.queue) in exchange.bindings:
            return
        exchange.bind(msg.queue, msg.routing_key)
        stored = self._stored_binding(msg.exchange, msg.queue, msg.routing_key)
        if stored is not None:
            self.store.bind(stored)

    def unbind(self, msg: QueueUnbind) -> None:
        exchange = self.exchanges.exchanges.get(msg.exchange)
        if exchange is None or (msg.routing_key, msg.queue) not in exchange.bindings:
            return
        stored = self._stored_binding(msg.exchange, msg.queue, msg.routing_key)
        exchange.unbind(msg.queue, msg.routing_key)
        if stored is not None:
            self.store.unbind(stored)

    def destinations(self, msg: Publish) -> list[str]:
        """The existing queues a message would be routed to."""
        names = self.exchanges.route(msg.exchange, msg.routing_key)
        return [name for name in names if name in self.queues]

    # -- queues -------------------------------------------------------------------

    def queue(self, name: str) -> BrokerQueue:
        queue = self.queues.get(name)
        if queue is None:
            raise BrokerError("not_found", f"no queue {name!r}")
        return queue

    def declare_queue(
        self,
        msg: QueueDeclare,
        *,
        asker: ConnectionState | None,
        owner: ConnectionState | None,
    ) -> BrokerQueue:
        """The queue, created unless it exists (owned by ``owner`` if exclusive)."""
        queue = self.queues.get(msg.queue)
        if queue is None:
            if msg.passive:
                raise BrokerError("not_found", f"no queue {msg.queue!r}")
            if not msg.queue:
                raise BrokerError("not_allowed", "a queue needs a name")
            queue = self.queues[msg.queue] = BrokerQueue(
                msg.queue,
                durable=msg.durable,
                exclusive_owner=owner if msg.exclusive else None,
                auto_delete=msg.auto_delete,
                max_priority=MAX_PRIORITY if msg.max_priority is None else msg.max_priority,
                message_ttl=msg.message_ttl,
                expires=msg.expires,
            )
            if queue.persistent:
                self.store.save_queue(
                    StoredQueue(queue.name, queue.max_priority, queue.message_ttl, queue.expires)
                )
        self.check_exclusive(queue, asker)
        queue.last_used = self.clock.time()
        self.arm_expiry(queue)
        return queue

    def delete_queue(self, msg: QueueDelete, asker: ConnectionState | None) -> int:
        queue = self.queues.get(msg.queue)
        if queue is None:
            return 0
        self.check_exclusive(queue, asker)
        if msg.if_unused and queue.consumers:
            raise BrokerError("in_use", f"queue {msg.queue!r} has consumers")
        if msg.if_empty and len(queue):
            raise BrokerError("in_use", f"queue {msg.queue!r} is not empty")
        return self.delete(queue)

    def delete(self, queue: BrokerQueue) -> int:
        """Unbind the queue, detach its consumers, drop its messages; return how many."""
        if self.queues.get(queue.name) is queue:
            del self.queues[queue.name]
            if queue.persistent:
                self.store.delete_queue(queue.name)
        self.exchanges.unbind_queue(queue.name)
        for consumer in list(queue.consumers):
            consumer.channel.consumers.pop(consumer.tag, None)
        queue.consumers.clear()
        return queue.purge()

    def check_exclusive(self, queue: BrokerQueue, asker: ConnectionState | None) -> None:
        owner = queue.exclusive_owner
        if owner is not None and owner is not asker:
            raise BrokerError("locked", f"queue {queue.name!r} is exclusive to another connection")

    def arm_expiry(self, queue: BrokerQueue) -> None:
        """x-expires: delete the queue once unused (no consumers, no use) that long."""
        if queue.expires is None or queue.expiry_armed or queue.consumers:
            return
        queue.expiry_armed = True
        expires = queue.expires

        def check() -> None:
            queue.expiry_armed = False
            if self.queues.get(queue.name) is not queue or queue.consumers:
                return
            if self.clock.time() >= queue.last_used + expires:
                self.delete(queue)
            else:
                self.arm_expiry(queue)

        self.clock.call_at(queue.last_used + expires, check)
