"""The unwritten changes of a durable broker store, coalesced until a commit.

A message that is published, delivered and acked between two commits is
never written at all: ``put`` records it among the new ones, ``claim``
marks it there, ``remove`` drops it. One that was written before gets an
update of its flags (claimed, redelivered) or a delete. Results, chords and
their parts keep only their latest state; topology changes are few and
order matters for them (a queue deleted, then declared again), so they are
kept in order.

A batch is written in this order: topology, messages, results, chords,
expiry. Deleting a queue drops the unwritten new messages of that queue
here, and deletes, when written, only the messages put up to that moment
(ids grow), so a queue declared again in the same batch keeps its new ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from .records import (
    StoredBinding,
    StoredChord,
    StoredExchange,
    StoredMessage,
    StoredQueue,
    StoredResult,
)

__all__ = ["Changes", "DeletedExchange", "DeletedQueue", "TopologyChange", "Unbound"]


class DeletedExchange(msgspec.Struct, frozen=True):
    name: str


class DeletedQueue(msgspec.Struct, frozen=True):
    name: str
    up_to: int  # the last message id given out when it was deleted


class Unbound(msgspec.Struct, frozen=True):
    binding: StoredBinding


TopologyChange = (
    StoredExchange | DeletedExchange | StoredQueue | DeletedQueue | StoredBinding | Unbound
)
Flags = tuple[bool, bool | None]  # (claimed, redelivered); None: leave it as written


@dataclass(eq=False)
class Changes:
    topology: list[TopologyChange] = field(default_factory=list)
    new: dict[int, StoredMessage] = field(default_factory=dict)
    claimed_new: set[int] = field(default_factory=set)
    flags: dict[int, Flags] = field(default_factory=dict)  # of messages written before
    removed: set[int] = field(default_factory=set)
    results: dict[tuple[str, str], StoredResult | None] = field(default_factory=dict)
    chords: dict[str, StoredChord | None] = field(default_factory=dict)  # None: forgotten
    parts: dict[str, dict[str, bytes]] = field(default_factory=dict)
    fired: set[str] = field(default_factory=set)
    expire_before: float | None = None

    def __bool__(self) -> bool:
        return bool(
            self.topology
            or self.new
            or self.flags
            or self.removed
            or self.results
            or self.chords
            or self.parts
            or self.fired
            or self.expire_before is not None
        )

    # -- messages ---------------------------------------------------------------

    def put(self, message: StoredMessage) -> None:
        self.new[message.id] = message

    def claim(self, message_id: int) -> None:
        if message_id in self.new:
            self.claimed_new.add(message_id)
        else:
            _, redelivered = self.flags.get(message_id, (False, None))
            self.flags[message_id] = (True, redelivered)

    def release(self, message_id: int) -> None:
        message = self.new.get(message_id)
        if message is None:
            self.flags[message_id] = (False, True)
            return
        self.claimed_new.discard(message_id)
        if not message.redelivered:
            self.new[message_id] = msgspec.structs.replace(message, redelivered=True)

    def remove(self, message_id: int) -> None:
        if self.new.pop(message_id, None) is not None:
            self.claimed_new.discard(message_id)  # never written: nothing to delete
            return
        self.flags.pop(message_id, None)
        self.removed.add(message_id)

    # -- topology ---------------------------------------------------------------

    def change_topology(self, change: TopologyChange) -> None:
        self.topology.append(change)
        if isinstance(change, DeletedQueue):
            for message_id in [i for i, m in self.new.items() if m.queue == change.name]:
                del self.new[message_id]
                self.claimed_new.discard(message_id)

    # -- results and chords -----------------------------------------------------

    def save_result(self, result: StoredResult) -> None:
        self.results[(result.kind, result.id)] = result

    def forget_result(self, kind: str, result_id: str) -> None:
        self.results[(kind, result_id)] = None

    def save_chord(self, chord: StoredChord) -> None:
        self.chords[chord.group_id] = msgspec.structs.replace(chord, parts={}, fired=False)
        self.parts.pop(chord.group_id, None)
        self.fired.discard(chord.group_id)

    def add_chord_part(self, group_id: str, task_id: str, value: bytes) -> None:
        self.parts.setdefault(group_id, {})[task_id] = value

    def chord_fired(self, group_id: str) -> None:
        self.fired.add(group_id)
        self.parts.pop(group_id, None)

    def forget_chord(self, group_id: str) -> None:
        self.chords[group_id] = None
        self.parts.pop(group_id, None)
        self.fired.discard(group_id)

    def expire(self, now: float) -> None:
        if self.expire_before is None or now > self.expire_before:
            self.expire_before = now
