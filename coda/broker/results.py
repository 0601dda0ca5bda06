"""The supervisor's Celery result store: states, saved groups, chord joins.

The ``coda://`` result backend (the Celery bridge's ``CodaBackend``) keeps Celery's
task metas here as opaque bytes in the app's result serializer, next to the
state they carry (SUCCESS, FAILURE, ...), which is all the supervisor reads.
Three things a key-value store cannot do well are done here instead:

- *Push waits.* ``ResultWait`` is answered when the task becomes ready, so
  ``AsyncResult.get()`` neither polls nor sleeps.
- *Chords without counters.* ``ChordStart`` registers the header's task ids
  in order; each header task reports with ``ChordPart``; the part that
  completes the set, and only that one, gets ``complete`` with every
  member's value, and its worker sends the body. A redelivered header task
  reports again harmlessly. No ``chord_unlock`` task polls anything.
- *Expiry.* Every record has a time to live (the backend's
  ``result_expires``, else the supervisor's ``--result-ttl``); a heap and one
  timer drop what is due, and reads never see an expired record.

A task whose message the broker dropped past its ``expires`` is recorded as
REVOKED with the note ``expired`` (unless it already has a final state), so a
caller waiting on it is answered instead of waiting forever; the backend
turns that into Celery's ``TaskRevokedError('expired')`` meta.

Records, chords and their parts are written to the broker's store as they
change and reloaded by ``restore`` when the supervisor starts; a waiter is
told a task is ready only once its result is durable (``after_commit``).
"""

from __future__ import annotations

import heapq
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..supervisor.clock import Clock, Timer
from ..supervisor.extension import ClientPeer
from .messages import (
    ChordPart,
    ChordReply,
    ChordStart,
    ResultEntry,
    ResultFetch,
    ResultForget,
    ResultSave,
    ResultValues,
    ResultWait,
)
from .storage import BrokerSnapshot, BrokerStore, MemoryBrokerStore, StoredChord, StoredResult

__all__ = ["READY_STATES", "ResultStore"]

log = logging.getLogger("coda.results")

READY_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


@dataclass(slots=True)
class Record:
    state: str
    value: bytes | None
    expires_at: float
    note: str = ""


@dataclass(eq=False)
class Chord:
    members: list[str]
    expires_at: float
    parts: dict[str, bytes] = field(default_factory=dict)
    fired: bool = False


class ResultStore:
    def __init__(self, clock: Clock, default_ttl: float, store: BrokerStore | None = None) -> None:
        self.clock = clock
        self.default_ttl = default_ttl
        self.store = store if store is not None else MemoryBrokerStore()
        self.counts: Counter[str] = Counter()
        self._records: dict[tuple[str, str], Record] = {}
        self._waiters: dict[str, list[tuple[ClientPeer, int]]] = {}
        self._chords: dict[str, Chord] = {}
        self._chord_of: dict[str, str] = {}
        self._expiry: list[tuple[float, str, str]] = []
        self._timer: Timer | None = None
        self._timer_due: float | None = None

    # -- task states and groups -----------------------------------------------

    def save(self, msg: ResultSave) -> None:
        key = (msg.kind, msg.id)
        current = self._live(key)
        if current is not None and current.state == "SUCCESS" and msg.state != "SUCCESS":
            self.counts["kept_success"] += 1
            return  # a late duplicate (a lost worker's rerun) never undoes a success
        expires_at = self._expires_at(msg.ttl)
        self._records[key] = Record(msg.state, msg.value, expires_at)
        self.store.save_result(StoredResult(msg.kind, msg.id, msg.state, msg.value, expires_at))
        self._schedule_expiry(expires_at, msg.kind, msg.id)
        self.counts["saved"] += 1
        if msg.kind == "task" and msg.state in READY_STATES:
            self._notify(msg.id)

    def fetch(self, msg: ResultFetch) -> list[ResultEntry]:
        return [self._entry(msg.kind, task_id) for task_id in msg.ids]

    def forget(self, msg: ResultForget) -> None:
        if self._records.pop((msg.kind, msg.id), None) is not None:
            self.store.forget_result(msg.kind, msg.id)

    def wait(self, peer: ClientPeer, msg: ResultWait) -> None:
        """Answer now if the task is ready, else when it becomes so."""
        entry = self._entry("task", msg.id)
        if entry.state in READY_STATES:
            reply = ResultValues(req_id=msg.req_id, entries=[entry])
            self.store.after_commit(lambda: peer.send(reply))
        else:
            self._waiters.setdefault(msg.id, []).append((peer, msg.req_id))

    def mark_revoked(self, task_id: str, note: str = "expired") -> None:
        """The broker dropped the task's message: say so to whoever waits."""
        key = ("task", task_id)
        current = self._live(key)
        if current is not None and current.state in READY_STATES:
            return
        expires_at = self._expires_at(None)
        self._records[key] = Record("REVOKED", None, expires_at, note)
        self.store.save_result(StoredResult("task", task_id, "REVOKED", None, expires_at, note))
        self._schedule_expiry(expires_at, "task", task_id)
        self._notify(task_id)

    # -- chords -----------------------------------------------------------------

    def chord_start(self, msg: ChordStart) -> None:
        """(Re)start the join of a chord header; a reapplied chord starts over."""
        self._drop_chord(msg.group_id)
        expires_at = self._expires_at(msg.ttl)
        self._add_chord(msg.group_id, Chord(list(msg.members), expires_at))
        self.store.save_chord(StoredChord(msg.group_id, list(msg.members), expires_at))
        self.counts["chords"] += 1

    def _add_chord(self, group_id: str, chord: Chord) -> None:
        self._chords[group_id] = chord
        for member in chord.members:
            self._chord_of[member] = group_id
        self._schedule_expiry(chord.expires_at, "chord", group_id)

    def chord_part(self, msg: ChordPart) -> ChordReply:
        group_id = msg.group_id if msg.group_id in self._chords else self._chord_of.get(msg.task_id)
        chord = self._chords.get(group_id) if group_id is not None else None
        if chord is None:
            return ChordReply(req_id=msg.req_id, unknown=True)
        if chord.fired:
            return ChordReply(req_id=msg.req_id)  # a redelivered header task: already joined
        if msg.task_id not in self._chord_of or self._chord_of[msg.task_id] != group_id:
            log.warning("task %s is not a member of chord %s", msg.task_id, group_id)
            return ChordReply(req_id=msg.req_id)
        chord.parts[msg.task_id] = msg.value
        if any(member not in chord.parts for member in chord.members):
            self.store.add_chord_part(group_id, msg.task_id, msg.value)
            return ChordReply(req_id=msg.req_id)
        chord.fired = True
        self.store.chord_fired(group_id)
        values = [chord.parts[member] for member in chord.members]
        chord.parts = {}
        self.counts["chords_joined"] += 1
        return ChordReply(req_id=msg.req_id, complete=True, values=values)

    # -- connections and status -------------------------------------------------

    def disconnected(self, peer: ClientPeer) -> None:
        for task_id in list(self._waiters):
            kept = [(p, r) for p, r in self._waiters[task_id] if p is not peer]
            if kept:
                self._waiters[task_id] = kept
            else:
                del self._waiters[task_id]

    def restore(self, snapshot: BrokerSnapshot) -> None:
        """The records and chords a previous supervisor left in the store."""
        for stored in snapshot.results:
            record = Record(stored.state, stored.value, stored.expires_at, stored.note)
            self._records[(stored.kind, stored.id)] = record
            self._schedule_expiry(stored.expires_at, stored.kind, stored.id)
        for stored_chord in snapshot.chords:
            chord = Chord(
                list(stored_chord.members),
                stored_chord.expires_at,
                dict(stored_chord.parts),
                stored_chord.fired,
            )
            self._add_chord(stored_chord.group_id, chord)

    def statistics(self) -> dict[str, Any]:
        return {
            "records": len(self._records),
            "chords": len(self._chords),
            "waiters": sum(len(w) for w in self._waiters.values()),
            "counts": dict(self.counts),
        }

    # -- internals --------------------------------------------------------------

    def _entry(self, kind: str, task_id: str) -> ResultEntry:
        record = self._live((kind, task_id))
        if record is None:
            return ResultEntry(id=task_id)
        return ResultEntry(id=task_id, state=record.state, value=record.value, note=record.note)

    def _live(self, key: tuple[str, str]) -> Record | None:
        record = self._records.get(key)
        if record is not None and record.expires_at <= self.clock.time():
            del self._records[key]
            return None
        return record

    def _notify(self, task_id: str) -> None:
        waiters = self._waiters.pop(task_id, None)
        if not waiters:
            return
        entry = self._entry("task", task_id)

        def answer() -> None:  # once the result is durable
            for peer, req_id in waiters:
                if peer.is_open:
                    peer.send(ResultValues(req_id=req_id, entries=[entry]))

        self.store.after_commit(answer)

    def _expires_at(self, ttl: float | None) -> float:
        seconds = ttl if ttl is not None and ttl > 0 else self.default_ttl
        return self.clock.time() + seconds

    def _drop_chord(self, group_id: str) -> None:
        """Forget the chord in memory (the store forgets it by itself, when
        it restarts or expires)."""
        chord = self._chords.pop(group_id, None)
        if chord is None:
            return
        for member in chord.members:
            if self._chord_of.get(member) == group_id:
                del self._chord_of[member]

    def _schedule_expiry(self, when: float, kind: str, item_id: str) -> None:
        heapq.heappush(self._expiry, (when, kind, item_id))
        if self._timer_due is not None and self._timer_due <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = when
        self._timer = self.clock.call_at(when, self._sweep)

    def _sweep(self) -> None:
        """Drop every record and chord whose time has come."""
        self._timer = None
        self._timer_due = None
        now = self.clock.time()
        dropped = 0
        while self._expiry and self._expiry[0][0] <= now:
            when, kind, item_id = heapq.heappop(self._expiry)
            if kind == "chord":
                chord = self._chords.get(item_id)
                if chord is not None and chord.expires_at == when:
                    self._drop_chord(item_id)
                    dropped += 1
                continue
            record = self._records.get((kind, item_id))
            if record is not None and record.expires_at == when:
                del self._records[(kind, item_id)]
                dropped += 1
        self.counts["expired"] += dropped
        self.store.expire(now)
        if self._expiry:
            when = self._expiry[0][0]
            self._timer_due = when
            self._timer = self.clock.call_at(when, self._sweep)
