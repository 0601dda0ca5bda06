"""What the durable broker stores share: changes buffered per turn, group-committed.

Every operation of the contract lands in one ``Changes`` and asks the
engine's generic commit pipeline (``coda.supervisor.stores.commits``) for a
flush; the first request of an event-loop turn defers one, so everything a
turn changed (a burst of publishes, deliveries and acks) is written in one
transaction on the store's own thread while the loop goes on. Callbacks given
to ``after_commit`` (publish confirms, result and chord answers) run on the
loop once what came before them is written.

A failed commit (disk full, I/O error) keeps its changes, in order, in front
of what came since, and the pipeline tries again a second later; nothing is
confirmed meanwhile. A subclass brings the database: how a list of
``Changes`` is written in one transaction, and how everything is read back.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ...supervisor.clock import Clock
from ...supervisor.stores.commits import CommitPipeline
from .base import BrokerStore
from .changes import Changes, DeletedExchange, DeletedQueue, TopologyChange, Unbound
from .records import (
    BrokerSnapshot,
    StoredBinding,
    StoredChord,
    StoredExchange,
    StoredMessage,
    StoredQueue,
    StoredResult,
)

__all__ = ["BufferedBrokerStore"]

C = TypeVar("C")


@dataclass(eq=False)
class _Batch(Generic[C]):
    store: BufferedBrokerStore[C]
    changes: list[Changes]  # written in this order, in one transaction

    def write(self, db: C) -> object:
        self.store._write(db, self.changes)
        return None

    def landed(self, result: object) -> None:
        pass

    def put_back(self) -> None:
        self.store._put_back(self.changes)


class BufferedBrokerStore(BrokerStore, Generic[C]):
    """``db`` is what the commit thread writes with; ``last_id`` the
    greatest message id the medium holds."""

    def __init__(self, db: C, clock: Clock | None, last_id: int) -> None:
        self._db = db
        self._changes = Changes()
        self._failed: list[Changes] = []  # a failed commit's changes, oldest first
        self._last_id = last_id
        self._pipeline: CommitPipeline[C] = CommitPipeline(
            db, clock, self._take, lambda: bool(self._changes or self._failed)
        )

    # -- what a subclass brings ------------------------------------------------

    @abc.abstractmethod
    def _write(self, db: C, changes: list[Changes]) -> None:
        """On the commit thread: write each, in order, in one transaction."""

    @abc.abstractmethod
    def _load(self, db: C) -> BrokerSnapshot:
        """On the commit thread: everything, claims turned into redeliveries."""

    # -- the contract -----------------------------------------------------------

    def new_message_id(self) -> int:
        self._last_id += 1
        return self._last_id

    def put(self, message: StoredMessage) -> None:
        self._changes.put(message)
        self._pipeline.request()

    def claim(self, message_id: int) -> None:
        self._changes.claim(message_id)
        self._pipeline.request()

    def release(self, message_id: int) -> None:
        self._changes.release(message_id)
        self._pipeline.request()

    def remove(self, message_id: int) -> None:
        self._changes.remove(message_id)
        self._pipeline.request()

    def save_exchange(self, exchange: StoredExchange) -> None:
        self._topology(exchange)

    def delete_exchange(self, name: str) -> None:
        self._topology(DeletedExchange(name))

    def save_queue(self, queue: StoredQueue) -> None:
        self._topology(queue)

    def delete_queue(self, name: str) -> None:
        self._topology(DeletedQueue(name, self._last_id))

    def bind(self, binding: StoredBinding) -> None:
        self._topology(binding)

    def unbind(self, binding: StoredBinding) -> None:
        self._topology(Unbound(binding))

    def _topology(self, change: TopologyChange) -> None:
        self._changes.change_topology(change)
        self._pipeline.request()

    def save_result(self, result: StoredResult) -> None:
        self._changes.save_result(result)
        self._pipeline.request()

    def forget_result(self, kind: str, result_id: str) -> None:
        self._changes.forget_result(kind, result_id)
        self._pipeline.request()

    def save_chord(self, chord: StoredChord) -> None:
        self._changes.save_chord(chord)
        self._pipeline.request()

    def add_chord_part(self, group_id: str, task_id: str, value: bytes) -> None:
        self._changes.add_chord_part(group_id, task_id, value)
        self._pipeline.request()

    def chord_fired(self, group_id: str) -> None:
        self._changes.chord_fired(group_id)
        self._pipeline.request()

    def forget_chord(self, group_id: str) -> None:
        self._changes.forget_chord(group_id)
        self._pipeline.request()

    def expire(self, now: float) -> None:
        self._changes.expire(now)
        self._pipeline.request()

    def load(self) -> BrokerSnapshot:
        self._pipeline.flush()
        return self._pipeline.run_blocking(self._load)

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._pipeline.after_commit(callback)

    def unavailable(self) -> str | None:
        error = self._pipeline.last_error
        return None if error is None else f"{type(error).__name__}: {error}"

    def flush(self) -> None:
        """Write everything pending now, blocking until it is durable."""
        self._pipeline.flush()

    @property
    def closed(self) -> bool:
        return self._pipeline.closed

    def _close_pipeline(self) -> None:
        self._pipeline.close()

    def statistics(self) -> dict[str, Any]:
        return {"commits": self._pipeline.commits, "failed_commits": self._pipeline.failed_commits}

    # -- the pipeline's side ------------------------------------------------------

    def _take(self) -> _Batch[C] | None:
        if not (self._changes or self._failed):
            return None
        changes = [*self._failed, self._changes] if self._changes else self._failed
        self._failed = []
        self._changes = Changes()
        return _Batch(self, changes)

    def _put_back(self, changes: list[Changes]) -> None:
        self._failed = changes + self._failed
