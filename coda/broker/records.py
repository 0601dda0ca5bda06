"""The broker's messages as records of its store: when each change is written.

A message routed to a persistent queue (durable, neither exclusive nor
auto-delete) is put in the store unless kombu published it as transient;
its ``Envelope.id`` then names its record, and each step of its life is
told to the store: delivered (claimed, or removed when no ack is expected),
requeued (released), gone (acked, rejected, expired, purged). Envelopes
with no id are transient and cost nothing here.
"""

from __future__ import annotations

from .held import HeldMessages
from .queues import BrokerQueue, Envelope
from .storage import BrokerSnapshot, BrokerStore, StoredMessage

__all__ = ["MessageRecords", "restore_messages"]


class MessageRecords:
    def __init__(self, store: BrokerStore) -> None:
        self.store = store

    def put(self, queue: BrokerQueue, envelope: Envelope, eta: float | None) -> None:
        envelope.id = self.store.new_message_id()
        self.store.put(
            StoredMessage(
                envelope.id,
                queue.name,
                envelope.body,
                envelope.priority,
                envelope.expires_at,
                envelope.task_id,
                eta,
            )
        )

    def delivered(self, envelope: Envelope, no_ack: bool) -> None:
        if not envelope.id:
            return
        if no_ack:
            self.store.remove(envelope.id)
        else:
            self.store.claim(envelope.id)

    def released(self, envelope: Envelope) -> None:
        if envelope.id:
            self.store.release(envelope.id)

    def gone(self, envelope: Envelope) -> None:
        if envelope.id:
            self.store.remove(envelope.id)


def restore_messages(
    snapshot: BrokerSnapshot, queues: dict[str, BrokerQueue], held: HeldMessages, now: float
) -> tuple[int, int]:
    """Put every stored message back in its queue, in arrival order, or hold
    it until its ETA; return how many, and the last one's arrival number."""
    restored = last = 0
    for stored in snapshot.messages:
        queue = queues.get(stored.queue)
        if queue is None:  # (its deletion was written first)
            continue
        envelope = Envelope(
            stored.body,
            stored.priority,
            stored.expires_at,
            stored.task_id,
            seq=stored.id,
            redelivered=stored.redelivered,
            id=stored.id,
        )
        if stored.eta is not None and stored.eta > now:
            held.hold(queue, envelope, stored.eta)
        else:
            queue.push(envelope)
        restored += 1
        last = stored.id
    return restored, last
