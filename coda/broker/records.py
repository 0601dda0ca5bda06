"""The broker's messages as records of its store: when each change is written.

A message routed to a persistent queue (durable, neither exclusive nor
auto-delete) is put in the store unless kombu published it as transient;
its ``Envelope.id`` then names its record, and each step of its life is
told to the store: delivered (claimed, or removed when no ack is expected),
requeued (released), gone (acked, rejected, expired, purged). Envelopes
with no id are transient and cost nothing here.
"""

from __future__ import annotations

from collections.abc import Iterator

from .queues import BrokerQueue, Envelope
from .storage import BrokerSnapshot, BrokerStore, StoredMessage

__all__ = ["MessageRecords", "envelopes_of"]


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


def envelopes_of(snapshot: BrokerSnapshot) -> Iterator[tuple[str, Envelope, float | None]]:
    """(queue name, envelope, eta) of every stored message, in arrival order."""
    for stored in snapshot.messages:
        envelope = Envelope(
            stored.body,
            stored.priority,
            stored.expires_at,
            stored.task_id,
            seq=stored.id,
            redelivered=stored.redelivered,
            id=stored.id,
        )
        yield stored.queue, envelope, stored.eta
