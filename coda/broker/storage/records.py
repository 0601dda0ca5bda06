"""What the broker keeps in its store: plain, frozen records.

Only what must outlive the supervisor is recorded: durable exchanges, queues
and bindings (not auto-delete or exclusive ones), the persistent messages of
durable queues, Celery results, and chord joins. Times are epoch seconds.
"""

from __future__ import annotations

import msgspec

__all__ = [
    "BrokerSnapshot",
    "StoredBinding",
    "StoredChord",
    "StoredExchange",
    "StoredMessage",
    "StoredQueue",
    "StoredResult",
]


class StoredMessage(msgspec.Struct, frozen=True):
    """A message of one durable queue (a message routed to two queues is two
    records). ``eta``: held until then (None: ready on arrival). ``id`` is
    unique in the store and grows with arrival, so it is also the order in
    which a queue's messages come back."""

    id: int
    queue: str
    body: bytes
    priority: int = 0
    expires_at: float | None = None
    task_id: str | None = None
    eta: float | None = None
    redelivered: bool = False


class StoredQueue(msgspec.Struct, frozen=True):
    name: str
    max_priority: int
    message_ttl: float | None = None
    expires: float | None = None  # x-expires: deleted once unused that long


class StoredExchange(msgspec.Struct, frozen=True):
    name: str
    type: str  # direct, topic or fanout
    auto_delete: bool = False


class StoredBinding(msgspec.Struct, frozen=True):
    exchange: str
    queue: str
    key: str


class StoredResult(msgspec.Struct, frozen=True):
    """A Celery task state or saved group (``kind``), as opaque bytes."""

    kind: str
    id: str
    state: str
    value: bytes | None
    expires_at: float
    note: str = ""


class StoredChord(msgspec.Struct, frozen=True):
    """A chord join: its header's task ids in order, and the parts reported
    so far (task id -> encoded outcome); ``fired`` once the last one came."""

    group_id: str
    members: list[str]
    expires_at: float
    fired: bool = False
    parts: dict[str, bytes] = {}


class BrokerSnapshot(msgspec.Struct, frozen=True):
    """Everything a store holds, as the broker reloads it at start.

    ``messages`` are in id order; those a consumer of the previous
    generation had not acknowledged come back ready, with ``redelivered``.
    """

    exchanges: list[StoredExchange] = []
    queues: list[StoredQueue] = []
    bindings: list[StoredBinding] = []
    messages: list[StoredMessage] = []
    results: list[StoredResult] = []
    chords: list[StoredChord] = []
