"""The broker's store for ``--store memory://``: records kept in dicts.

Nothing outlives the process, so a supervisor on ``memory://`` starts with
an empty broker; ``load()`` on the same object gives back what it holds, as
a durable store would after a restart (the contract suite and the broker's
unit tests restart a broker on it). Every change is "durable" at once.
"""

from __future__ import annotations

import heapq
from typing import Any

import msgspec

from .base import BrokerStore
from .records import (
    BrokerSnapshot,
    StoredBinding,
    StoredChord,
    StoredExchange,
    StoredMessage,
    StoredQueue,
    StoredResult,
)

__all__ = ["MemoryBrokerStore"]


class MemoryBrokerStore(BrokerStore):
    def __init__(self) -> None:
        self._last_id = 0
        self._messages: dict[int, StoredMessage] = {}
        self._claimed: set[int] = set()
        self._exchanges: dict[str, StoredExchange] = {}
        self._queues: dict[str, StoredQueue] = {}
        self._bindings: dict[StoredBinding, None] = {}  # an ordered set
        self._results: dict[tuple[str, str], StoredResult] = {}
        self._chords: dict[str, StoredChord] = {}
        self._parts: dict[str, dict[str, bytes]] = {}
        self._expiry: list[tuple[float, str, str]] = []  # (when, kind or "chord", id): a heap

    # -- messages ---------------------------------------------------------------

    def new_message_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def put(self, message: StoredMessage) -> None:
        self._messages[message.id] = message

    def claim(self, message_id: int) -> None:
        if message_id in self._messages:
            self._claimed.add(message_id)

    def release(self, message_id: int) -> None:
        message = self._messages.get(message_id)
        if message is not None:
            self._claimed.discard(message_id)
            if not message.redelivered:
                self._messages[message_id] = msgspec.structs.replace(message, redelivered=True)

    def remove(self, message_id: int) -> None:
        self._messages.pop(message_id, None)
        self._claimed.discard(message_id)

    # -- topology ---------------------------------------------------------------

    def save_exchange(self, exchange: StoredExchange) -> None:
        self._exchanges[exchange.name] = exchange

    def delete_exchange(self, name: str) -> None:
        self._exchanges.pop(name, None)
        for binding in [b for b in self._bindings if b.exchange == name]:
            del self._bindings[binding]

    def save_queue(self, queue: StoredQueue) -> None:
        self._queues[queue.name] = queue

    def delete_queue(self, name: str) -> None:
        self._queues.pop(name, None)
        for binding in [b for b in self._bindings if b.queue == name]:
            del self._bindings[binding]
        for message_id in [m.id for m in self._messages.values() if m.queue == name]:
            self.remove(message_id)

    def bind(self, binding: StoredBinding) -> None:
        self._bindings[binding] = None

    def unbind(self, binding: StoredBinding) -> None:
        self._bindings.pop(binding, None)

    # -- results and chords -----------------------------------------------------

    def save_result(self, result: StoredResult) -> None:
        self._results[(result.kind, result.id)] = result
        heapq.heappush(self._expiry, (result.expires_at, result.kind, result.id))

    def forget_result(self, kind: str, result_id: str) -> None:
        self._results.pop((kind, result_id), None)

    def save_chord(self, chord: StoredChord) -> None:
        self._chords[chord.group_id] = msgspec.structs.replace(chord, parts={})
        self._parts[chord.group_id] = {}
        heapq.heappush(self._expiry, (chord.expires_at, "chord", chord.group_id))

    def add_chord_part(self, group_id: str, task_id: str, value: bytes) -> None:
        if group_id in self._chords:
            self._parts[group_id][task_id] = value

    def chord_fired(self, group_id: str) -> None:
        chord = self._chords.get(group_id)
        if chord is not None:
            self._chords[group_id] = msgspec.structs.replace(chord, fired=True)
            self._parts[group_id] = {}

    def forget_chord(self, group_id: str) -> None:
        self._chords.pop(group_id, None)
        self._parts.pop(group_id, None)

    def expire(self, now: float) -> None:
        """Pops what came due (an entry whose record was saved again since,
        with a later expiry, is stale and skipped)."""
        while self._expiry and self._expiry[0][0] <= now:
            _, kind, item_id = heapq.heappop(self._expiry)
            if kind == "chord":
                chord = self._chords.get(item_id)
                if chord is not None and chord.expires_at <= now:
                    self.forget_chord(item_id)
                continue
            result = self._results.get((kind, item_id))
            if result is not None and result.expires_at <= now:
                del self._results[(kind, item_id)]

    # -- lifecycle --------------------------------------------------------------

    def load(self) -> BrokerSnapshot:
        for message_id in list(self._claimed):
            self.release(message_id)
        return BrokerSnapshot(
            exchanges=list(self._exchanges.values()),
            queues=list(self._queues.values()),
            bindings=list(self._bindings),
            messages=sorted(self._messages.values(), key=lambda m: m.id),
            results=list(self._results.values()),
            chords=[
                msgspec.structs.replace(chord, parts=dict(self._parts.get(group_id, {})))
                for group_id, chord in self._chords.items()
            ],
        )

    def statistics(self) -> dict[str, Any]:
        return {"messages": len(self._messages), "results": len(self._results)}
