"""One broker queue: ready messages by priority, and who consumes them.

A queue holds ``Envelope`` objects (the opaque kombu message plus what the
broker needs to know about it) in ten FIFO lanes, one per priority 0-9;
``pop`` takes from the highest non-empty lane, so a priority 9 message
overtakes everything below it and equal priorities keep arrival order.
Requeued messages (a rejected delivery, a dead consumer's leases) go back
where they were, as RabbitMQ puts them: before every message that arrived
after them, whatever order they are requeued in. Expired messages are dropped when they reach the
front, as RabbitMQ does, and handed to ``on_expired`` so the result store can
mark the task revoked.

Every envelope carries ``seq``, a broker-wide arrival number: a consumer of
several queues is given the oldest head first, so deliveries reach a
connection in the order the messages arrived.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .channels import Consumer

__all__ = ["MAX_PRIORITY", "BrokerQueue", "Envelope"]

MAX_PRIORITY = 9


@dataclass(eq=False, slots=True)
class Envelope:
    """A message inside the broker. ``body`` is never decoded here. ``id``
    names its record in the broker's store (0: not stored, transient)."""

    body: bytes
    priority: int
    expires_at: float | None
    task_id: str | None
    seq: int = 0
    redelivered: bool = False
    id: int = 0

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


@dataclass(eq=False)
class BrokerQueue:
    name: str
    durable: bool = False
    exclusive_owner: object | None = None
    auto_delete: bool = False
    max_priority: int = MAX_PRIORITY
    message_ttl: float | None = None
    expires: float | None = None
    consumers: list[Consumer] = field(default_factory=list)
    had_consumers: bool = False
    held: int = 0  # messages waiting for their ETA (counted in size and purge)
    generation: int = 0  # bumped by purge/delete: held messages of an older one are void
    last_used: float = 0.0
    expiry_armed: bool = False  # a timer will check x-expires (queue unused too long)
    _lanes: list[deque[Envelope]] = field(
        default_factory=lambda: [deque() for _ in range(MAX_PRIORITY + 1)]
    )
    _ready: int = 0
    _next_consumer: int = 0

    @property
    def ready(self) -> int:
        return self._ready

    @property
    def persistent(self) -> bool:
        """Kept in the store: durable, and neither exclusive nor auto-delete
        (those end with a connection or a consumer anyway)."""
        return self.durable and self.exclusive_owner is None and not self.auto_delete

    def envelopes(self) -> Iterator[Envelope]:
        """The ready messages, highest priority first."""
        for lane in reversed(self._lanes):
            yield from lane

    def __len__(self) -> int:
        return self._ready + self.held

    def lane(self, priority: int) -> int:
        return max(0, min(priority, self.max_priority, MAX_PRIORITY))

    def push(self, envelope: Envelope) -> None:
        self._lanes[self.lane(envelope.priority)].append(envelope)
        self._ready += 1

    def requeue(self, envelope: Envelope) -> None:
        """Put a delivered message back at its place by arrival (``seq``).

        A lane is sorted by ``seq``: pushes get increasing numbers and requeues
        keep theirs. Requeued messages gather at the front, so the scan is as
        short as the number of them already back, not the queue's length."""
        lane = self._lanes[self.lane(envelope.priority)]
        index = 0
        while index < len(lane) and lane[index].seq < envelope.seq:
            index += 1
        lane.insert(index, envelope)
        self._ready += 1

    def head(self, now: float, on_expired: Callable[[Envelope], None]) -> Envelope | None:
        """The next message to deliver, dropping expired ones on the way."""
        for lane in reversed(self._lanes):
            while lane:
                envelope = lane[0]
                if not envelope.expired(now):
                    return envelope
                lane.popleft()
                self._ready -= 1
                on_expired(envelope)
        return None

    def pop(self, now: float, on_expired: Callable[[Envelope], None]) -> Envelope | None:
        envelope = self.head(now, on_expired)
        if envelope is not None:
            self._lanes[self.lane(envelope.priority)].popleft()
            self._ready -= 1
        return envelope

    def purge(self) -> int:
        """Drop every ready and held message; return how many."""
        count = len(self)
        for lane in self._lanes:
            lane.clear()
        self._ready = 0
        self.held = 0
        self.generation += 1
        return count

    def next_consumer(self, eligible: Callable[[Consumer], bool]) -> Consumer | None:
        """Round-robin over the consumers for which ``eligible`` is true."""
        consumers = self.consumers
        count = len(consumers)
        for offset in range(count):
            index = (self._next_consumer + offset) % count
            consumer = consumers[index]
            if eligible(consumer):
                self._next_consumer = index + 1
                return consumer
        return None
