"""The broker's tables in the supervisor's SQLite file.

The broker opens its own connection to the file the engine's store uses
(``--store sqlite:///...``), in WAL mode with the same ``synchronous``
setting, and keeps to tables of its own (``broker_*``). The engine's store
holds the file's lock, so one supervisor at a time writes here too; the
two connections take turns for the write lock (``BEGIN IMMEDIATE``, with a
busy timeout), each from its own commit thread.

Buffering and group commit are ``buffered.py``'s; this module knows the SQL.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import Any

import msgspec

from ...errors import ConfigurationError
from ...supervisor.clock import Clock
from ...supervisor.stores.sqlite.schema import parse_sqlite_url
from .buffered import BufferedBrokerStore
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

__all__ = ["SCHEMA_VERSION", "SqliteBrokerStore"]

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS broker_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS broker_exchanges (
    name TEXT PRIMARY KEY, type TEXT NOT NULL, auto_delete INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS broker_queues (
    name TEXT PRIMARY KEY, max_priority INTEGER NOT NULL, message_ttl REAL, expires REAL
);
CREATE TABLE IF NOT EXISTS broker_bindings (
    exchange TEXT NOT NULL, queue TEXT NOT NULL, key TEXT NOT NULL,
    PRIMARY KEY (exchange, queue, key)
);
CREATE TABLE IF NOT EXISTS broker_messages (
    id INTEGER PRIMARY KEY,
    queue TEXT NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL,
    expires_at REAL,
    task_id TEXT,
    eta REAL,
    redelivered INTEGER NOT NULL,
    claimed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS broker_results (
    kind TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL, value BLOB,
    expires_at REAL NOT NULL, note TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS broker_results_expiry ON broker_results (expires_at);
CREATE TABLE IF NOT EXISTS broker_chords (
    group_id TEXT PRIMARY KEY, members BLOB NOT NULL, expires_at REAL NOT NULL,
    fired INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS broker_chords_expiry ON broker_chords (expires_at);
CREATE TABLE IF NOT EXISTS broker_chord_parts (
    group_id TEXT NOT NULL, task_id TEXT NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY (group_id, task_id)
);
"""

_members = msgspec.msgpack.Encoder()
_decode_members = msgspec.msgpack.Decoder(list[str])


class SqliteBrokerStore(BufferedBrokerStore[sqlite3.Connection]):
    """Without a ``clock`` every change is committed before the call returns."""

    def __init__(
        self, path: str, *, synchronous: str = "NORMAL", clock: Clock | None = None
    ) -> None:
        self.path = path
        try:
            db = _connect(path, synchronous)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"cannot open the broker's tables in {path!r}: {exc}") from exc
        (last_id,) = db.execute("SELECT coalesce(max(id), 0) FROM broker_messages").fetchone()
        super().__init__(db, clock, int(last_id))

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> SqliteBrokerStore:
        path, synchronous = parse_sqlite_url(url)
        return cls(path, synchronous=synchronous, clock=clock)

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._close_pipeline()
        finally:
            self._db.close()

    # -- writing ------------------------------------------------------------------

    def _write(self, db: sqlite3.Connection, changes: list[Changes]) -> None:
        db.execute("BEGIN IMMEDIATE")
        try:
            for change in changes:
                _write_changes(db, change)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # -- reading ------------------------------------------------------------------

    def _load(self, db: sqlite3.Connection) -> BrokerSnapshot:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE broker_messages SET claimed = 0, redelivered = 1 WHERE claimed = 1")
            snapshot = _read_all(db)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return snapshot


def _connect(path: str, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"WAL journal mode unavailable (got {mode})")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.executescript(SCHEMA)
    row = db.execute("SELECT value FROM broker_meta WHERE key = 'schema'").fetchone()
    if row is not None and row[0] > SCHEMA_VERSION:
        db.close()
        raise sqlite3.OperationalError(
            f"the broker's schema version {row[0]} is newer than this Coda's ({SCHEMA_VERSION})"
        )
    db.execute(
        "INSERT OR REPLACE INTO broker_meta (key, value) VALUES ('schema', ?)", (SCHEMA_VERSION,)
    )
    return db


def _write_changes(db: sqlite3.Connection, changes: Changes) -> None:
    for change in changes.topology:
        _write_topology(db, change)
    _write_messages(db, changes)
    _write_results(db, changes)
    if changes.expire_before is not None:
        before = (changes.expire_before,)
        db.execute("DELETE FROM broker_results WHERE expires_at <= ?", before)
        db.execute(
            "DELETE FROM broker_chord_parts WHERE group_id IN "
            "(SELECT group_id FROM broker_chords WHERE expires_at <= ?)",
            before,
        )
        db.execute("DELETE FROM broker_chords WHERE expires_at <= ?", before)


def _write_topology(db: sqlite3.Connection, change: TopologyChange) -> None:
    match change:
        case StoredExchange(name=name, type=kind, auto_delete=auto_delete):
            db.execute(
                "INSERT OR REPLACE INTO broker_exchanges VALUES (?, ?, ?)",
                (name, kind, auto_delete),
            )
        case DeletedExchange(name=name):
            db.execute("DELETE FROM broker_exchanges WHERE name = ?", (name,))
            db.execute("DELETE FROM broker_bindings WHERE exchange = ?", (name,))
        case StoredQueue(name=name, max_priority=top, message_ttl=ttl, expires=expires):
            db.execute(
                "INSERT OR REPLACE INTO broker_queues VALUES (?, ?, ?, ?)",
                (name, top, ttl, expires),
            )
        case DeletedQueue(name=name, up_to=up_to):
            db.execute("DELETE FROM broker_queues WHERE name = ?", (name,))
            db.execute("DELETE FROM broker_bindings WHERE queue = ?", (name,))
            db.execute("DELETE FROM broker_messages WHERE queue = ? AND id <= ?", (name, up_to))
        case StoredBinding(exchange=exchange, queue=queue, key=key):
            db.execute(
                "INSERT OR IGNORE INTO broker_bindings VALUES (?, ?, ?)", (exchange, queue, key)
            )
        case Unbound(binding=binding):
            db.execute(
                "DELETE FROM broker_bindings WHERE exchange = ? AND queue = ? AND key = ?",
                (binding.exchange, binding.queue, binding.key),
            )


def _write_messages(db: sqlite3.Connection, changes: Changes) -> None:
    if changes.new:
        claimed = changes.claimed_new
        db.executemany(
            "INSERT OR REPLACE INTO broker_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    m.id,
                    m.queue,
                    m.body,
                    m.priority,
                    m.expires_at,
                    m.task_id,
                    m.eta,
                    m.redelivered,
                    m.id in claimed,
                )
                for m in changes.new.values()
            ],
        )
    if changes.flags:
        db.executemany(
            "UPDATE broker_messages SET claimed = ?, redelivered = coalesce(?, redelivered) "
            "WHERE id = ?",
            [(claimed, redelivered, i) for i, (claimed, redelivered) in changes.flags.items()],
        )
    if changes.removed:
        db.executemany("DELETE FROM broker_messages WHERE id = ?", [(i,) for i in changes.removed])


def _write_results(db: sqlite3.Connection, changes: Changes) -> None:
    saved = [r for r in changes.results.values() if r is not None]
    if saved:
        db.executemany(
            "INSERT OR REPLACE INTO broker_results VALUES (?, ?, ?, ?, ?, ?)",
            [(r.kind, r.id, r.state, r.value, r.expires_at, r.note) for r in saved],
        )
    forgotten = [key for key, r in changes.results.items() if r is None]
    if forgotten:
        db.executemany("DELETE FROM broker_results WHERE kind = ? AND id = ?", forgotten)
    for group_id, chord in changes.chords.items():
        db.execute("DELETE FROM broker_chord_parts WHERE group_id = ?", (group_id,))
        if chord is None:
            db.execute("DELETE FROM broker_chords WHERE group_id = ?", (group_id,))
        else:
            db.execute(
                "INSERT OR REPLACE INTO broker_chords VALUES (?, ?, ?, ?)",
                (group_id, _members.encode(chord.members), chord.expires_at, chord.fired),
            )
    db.executemany(
        "INSERT OR REPLACE INTO broker_chord_parts VALUES (?, ?, ?)",
        [(g, t, v) for g, parts in changes.parts.items() for t, v in parts.items()],
    )
    for group_id in changes.fired:
        db.execute("UPDATE broker_chords SET fired = 1 WHERE group_id = ?", (group_id,))
        db.execute("DELETE FROM broker_chord_parts WHERE group_id = ?", (group_id,))


def _read_all(db: sqlite3.Connection) -> BrokerSnapshot:
    parts: dict[str, dict[str, bytes]] = {}
    for group_id, task_id, value in db.execute("SELECT * FROM broker_chord_parts"):
        parts.setdefault(group_id, {})[task_id] = bytes(value)
    return BrokerSnapshot(
        exchanges=[
            StoredExchange(name, kind, bool(auto_delete))
            for name, kind, auto_delete in db.execute("SELECT * FROM broker_exchanges")
        ],
        queues=[StoredQueue(*row) for row in db.execute("SELECT * FROM broker_queues")],
        bindings=[
            StoredBinding(*row)
            for row in db.execute("SELECT * FROM broker_bindings ORDER BY rowid")
        ],
        messages=list(_messages(db.execute("SELECT * FROM broker_messages ORDER BY id"))),
        results=[
            StoredResult(kind, i, state, None if value is None else bytes(value), expires, note)
            for kind, i, state, value, expires, note in db.execute("SELECT * FROM broker_results")
        ],
        chords=[
            StoredChord(g, _decode_members.decode(members), expires, bool(fired), parts.get(g, {}))
            for g, members, expires, fired in db.execute("SELECT * FROM broker_chords")
        ],
    )


def _messages(rows: Iterable[Any]) -> Iterable[StoredMessage]:
    for row in rows:
        message_id, queue, body, priority, expires_at, task_id, eta, redelivered, _ = row
        yield StoredMessage(
            message_id, queue, bytes(body), priority, expires_at, task_id, eta, bool(redelivered)
        )
