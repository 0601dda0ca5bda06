"""The broker's persistence contract: what ``coda://`` asks of the store it shares
with the engine.

The in-memory broker (``coda.broker.broker``) stays the authority for what
this supervisor holds: its queues, who consumes what, prefetch credit,
timers. It tells its ``BrokerStore`` what changed, one operation at a time,
and reloads everything with ``load()`` when the supervisor starts. Every
operation returns at once (a durable store buffers it); ``after_commit``
runs a callback once every change made before it is durable, and the broker
answers a producer's publish, a result save or a chord part from such a
callback, never before.

Messages, in the order of their life::

    put ──► claim ──► remove            (delivered, then acked, or rejected)
     │        └─────► release ──► ...   (requeued, redelivered)
     └──────────────► remove            (expired, purged, delivered without ack)

- ``put``: the message is in its queue, ready, or held until its ``eta``,
  and claimed by nobody. Its id comes from ``new_message_id``.
- ``claim``: handed to a consumer of this supervisor and not yet acked. In a
  fleet sharing one database, no other supervisor may hand it out while this
  one holds the claim (row locks, or an owner column fenced by the holder's
  epoch).
- ``release``: back to ready for any consumer, marked redelivered.
- ``remove``: gone for good.

``load()`` returns what the supervisor serves after a restart: a message
still claimed by the previous generation (its consumer's connection died
with it) comes back ready and redelivered, as after a dropped connection.

Topology and results are whole records, saved again when they change;
deleting a queue deletes its bindings and every message put to it so far.
Results and chords carry their expiry time; ``expire(now)`` forgets those
past it.

Only durable things are given to the store: the broker keeps auto-delete and
exclusive queues, transient messages, consumers and waiters in memory.
Every implementation passes ``tests/broker/test_storage_contract.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from .records import (
    BrokerSnapshot,
    StoredBinding,
    StoredChord,
    StoredExchange,
    StoredMessage,
    StoredQueue,
    StoredResult,
)

__all__ = ["BrokerStore"]


class BrokerStore(abc.ABC):
    """Persistence of the ``coda://`` broker and its result store."""

    # -- messages ---------------------------------------------------------------

    @abc.abstractmethod
    def new_message_id(self) -> int:
        """An id no message of this store had, greater than every id given
        out before (ids order a queue's messages when they are reloaded)."""

    @abc.abstractmethod
    def put(self, message: StoredMessage) -> None:
        """A message enters its durable queue (ready, or held until its eta)."""

    @abc.abstractmethod
    def claim(self, message_id: int) -> None:
        """The message was delivered to a consumer of this supervisor, which
        has not acknowledged it yet."""

    @abc.abstractmethod
    def release(self, message_id: int) -> None:
        """A claimed message is ready again, and redelivered."""

    @abc.abstractmethod
    def remove(self, message_id: int) -> None:
        """The message is gone: acked, rejected, expired or purged."""

    # -- topology ---------------------------------------------------------------

    @abc.abstractmethod
    def save_exchange(self, exchange: StoredExchange) -> None: ...

    @abc.abstractmethod
    def delete_exchange(self, name: str) -> None:
        """The exchange and its bindings."""

    @abc.abstractmethod
    def save_queue(self, queue: StoredQueue) -> None: ...

    @abc.abstractmethod
    def delete_queue(self, name: str) -> None:
        """The queue, its bindings, and every message put to it so far."""

    @abc.abstractmethod
    def bind(self, binding: StoredBinding) -> None: ...

    @abc.abstractmethod
    def unbind(self, binding: StoredBinding) -> None: ...

    # -- results and chords -----------------------------------------------------------

    @abc.abstractmethod
    def save_result(self, result: StoredResult) -> None:
        """Insert or replace the result of (kind, id)."""

    @abc.abstractmethod
    def forget_result(self, kind: str, result_id: str) -> None: ...

    @abc.abstractmethod
    def save_chord(self, chord: StoredChord) -> None:
        """Start (or restart) a chord's join: its parts so far are dropped."""

    @abc.abstractmethod
    def add_chord_part(self, group_id: str, task_id: str, value: bytes) -> None:
        """A header task's outcome, kept until the chord fires or expires."""

    @abc.abstractmethod
    def chord_fired(self, group_id: str) -> None:
        """The last part came: the chord is joined, its parts are dropped."""

    @abc.abstractmethod
    def forget_chord(self, group_id: str) -> None: ...

    @abc.abstractmethod
    def expire(self, now: float) -> None:
        """Forget the results and chords whose expiry time is ``now`` or before."""

    # -- lifecycle ----------------------------------------------------------------

    @abc.abstractmethod
    def load(self) -> BrokerSnapshot:
        """Everything held, for the broker starting on this store; claims of
        the previous generation become ready, redelivered messages."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once every change made so far is durable (at once
        when nothing is pending), on the supervisor's thread."""
        callback()

    def unavailable(self) -> str | None:
        """Why changes cannot be made durable right now (the last commit
        failed), or None. The broker then refuses publishes that would wait
        for a confirmation that cannot come."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Write what is pending and release the medium."""

    def statistics(self) -> dict[str, Any]:
        """Counters for ``coda status`` (commits, rows...)."""
        return {}
