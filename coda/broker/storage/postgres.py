"""The broker's tables in the fleet's PostgreSQL database.

On a fleet one supervisor at a time serves the ``coda://`` broker (see
``coda.broker.fleet``): the one holding the broker's advisory lock. Its
store writes through the very connection that holds the lock, so a
supervisor that lost it (its connection died) cannot write another word,
and the next one to take the lock loads everything it left, as after a
restart on SQLite. The tables (``coda_broker_*``) live in the store URL's
schema, next to the engine's.

Buffering and group commit are ``buffered.py``'s; this module knows the SQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
import psycopg

from ...supervisor.clock import Clock
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

__all__ = ["SCHEMA_VERSION", "PostgresBrokerStore"]

SCHEMA_VERSION = 1
Connection = psycopg.Connection[tuple[Any, ...]]

SCHEMA = """
CREATE TABLE IF NOT EXISTS coda_broker_meta (key text PRIMARY KEY, value integer NOT NULL);
CREATE TABLE IF NOT EXISTS coda_broker_exchanges (
    name text PRIMARY KEY, type text NOT NULL, auto_delete boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS coda_broker_queues (
    name text PRIMARY KEY, max_priority integer NOT NULL,
    message_ttl double precision, expires double precision
);
CREATE TABLE IF NOT EXISTS coda_broker_bindings (
    exchange text NOT NULL, queue text NOT NULL, key text NOT NULL, seq bigserial,
    PRIMARY KEY (exchange, queue, key)
);
CREATE TABLE IF NOT EXISTS coda_broker_messages (
    id bigint PRIMARY KEY,
    queue text NOT NULL,
    body bytea NOT NULL,
    priority integer NOT NULL,
    expires_at double precision,
    task_id text,
    eta double precision,
    redelivered boolean NOT NULL,
    claimed boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS coda_broker_results (
    kind text NOT NULL, id text NOT NULL, state text NOT NULL, value bytea,
    expires_at double precision NOT NULL, note text NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS coda_broker_results_expiry ON coda_broker_results (expires_at);
CREATE TABLE IF NOT EXISTS coda_broker_chords (
    group_id text PRIMARY KEY, members bytea NOT NULL, expires_at double precision NOT NULL,
    fired boolean NOT NULL
);
CREATE INDEX IF NOT EXISTS coda_broker_chords_expiry ON coda_broker_chords (expires_at);
CREATE TABLE IF NOT EXISTS coda_broker_chord_parts (
    group_id text NOT NULL, task_id text NOT NULL, value bytea NOT NULL,
    PRIMARY KEY (group_id, task_id)
);
"""

UPSERT_MESSAGE = """
INSERT INTO coda_broker_messages VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET claimed = excluded.claimed, redelivered = excluded.redelivered
"""
UPSERT_RESULT = """
INSERT INTO coda_broker_results VALUES (%s, %s, %s, %s, %s, %s)
ON CONFLICT (kind, id) DO UPDATE SET state = excluded.state, value = excluded.value,
    expires_at = excluded.expires_at, note = excluded.note
"""
UPSERT_CHORD = """
INSERT INTO coda_broker_chords VALUES (%s, %s, %s, %s)
ON CONFLICT (group_id) DO UPDATE SET members = excluded.members,
    expires_at = excluded.expires_at, fired = excluded.fired
"""
UPSERT_PART = """
INSERT INTO coda_broker_chord_parts VALUES (%s, %s, %s)
ON CONFLICT (group_id, task_id) DO UPDATE SET value = excluded.value
"""

_members = msgspec.msgpack.Encoder()
_decode_members = msgspec.msgpack.Decoder(list[str])


class PostgresBrokerStore(BufferedBrokerStore[Connection]):
    """``conn``: the connection that holds the broker's lock (its search
    path set to ``schema``); the store owns it from now on. Without a
    ``clock`` every change commits at once."""

    def __init__(self, conn: Connection, schema: str, *, clock: Clock | None = None) -> None:
        with conn.transaction():
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")  # a checked SQL name
            conn.execute(SCHEMA)
            row = conn.execute("SELECT value FROM coda_broker_meta WHERE key = 'schema'").fetchone()
            if row is not None and int(row[0]) > SCHEMA_VERSION:
                raise psycopg.DataError(
                    f"the broker's schema version {row[0]} is newer than this Coda's "
                    f"({SCHEMA_VERSION}): upgrade coda-workflows on this host"
                )
            conn.execute(
                "INSERT INTO coda_broker_meta VALUES ('schema', %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (SCHEMA_VERSION,),
            )
            (last_id,) = conn.execute(
                "SELECT coalesce(max(id), 0) FROM coda_broker_messages"
            ).fetchone() or (0,)
        super().__init__(conn, clock, int(last_id))

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._close_pipeline()
        finally:
            self._db.close()

    def _write(self, db: Connection, changes: list[Changes]) -> None:
        with db.transaction(), db.cursor() as cursor:
            for change in changes:
                _write_changes(cursor, change)

    def _load(self, db: Connection) -> BrokerSnapshot:
        with db.transaction():
            db.execute(
                "UPDATE coda_broker_messages SET claimed = false, redelivered = true WHERE claimed"
            )
            return _read_all(db)


def _write_changes(cursor: psycopg.Cursor[Any], changes: Changes) -> None:
    for change in changes.topology:
        _write_topology(cursor, change)
    _write_messages(cursor, changes)
    _write_results(cursor, changes)
    if changes.expire_before is not None:
        before = (changes.expire_before,)
        cursor.execute("DELETE FROM coda_broker_results WHERE expires_at <= %s", before)
        cursor.execute(
            "DELETE FROM coda_broker_chord_parts WHERE group_id IN "
            "(SELECT group_id FROM coda_broker_chords WHERE expires_at <= %s)",
            before,
        )
        cursor.execute("DELETE FROM coda_broker_chords WHERE expires_at <= %s", before)


def _write_topology(cursor: psycopg.Cursor[Any], change: TopologyChange) -> None:
    match change:
        case StoredExchange(name=name, type=kind, auto_delete=auto_delete):
            cursor.execute(
                "INSERT INTO coda_broker_exchanges VALUES (%s, %s, %s) ON CONFLICT (name) "
                "DO UPDATE SET type = excluded.type, auto_delete = excluded.auto_delete",
                (name, kind, auto_delete),
            )
        case DeletedExchange(name=name):
            cursor.execute("DELETE FROM coda_broker_exchanges WHERE name = %s", (name,))
            cursor.execute("DELETE FROM coda_broker_bindings WHERE exchange = %s", (name,))
        case StoredQueue(name=name, max_priority=top, message_ttl=ttl, expires=expires):
            cursor.execute(
                "INSERT INTO coda_broker_queues VALUES (%s, %s, %s, %s) ON CONFLICT (name) "
                "DO UPDATE SET max_priority = excluded.max_priority, "
                "message_ttl = excluded.message_ttl, expires = excluded.expires",
                (name, top, ttl, expires),
            )
        case DeletedQueue(name=name, up_to=up_to):
            cursor.execute("DELETE FROM coda_broker_queues WHERE name = %s", (name,))
            cursor.execute("DELETE FROM coda_broker_bindings WHERE queue = %s", (name,))
            cursor.execute(
                "DELETE FROM coda_broker_messages WHERE queue = %s AND id <= %s", (name, up_to)
            )
        case StoredBinding(exchange=exchange, queue=queue, key=key):
            cursor.execute(
                "INSERT INTO coda_broker_bindings (exchange, queue, key) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                (exchange, queue, key),
            )
        case Unbound(binding=binding):
            cursor.execute(
                "DELETE FROM coda_broker_bindings WHERE exchange = %s AND queue = %s AND key = %s",
                (binding.exchange, binding.queue, binding.key),
            )


def _write_messages(cursor: psycopg.Cursor[Any], changes: Changes) -> None:
    if changes.new:
        claimed = changes.claimed_new
        cursor.executemany(
            UPSERT_MESSAGE,
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
        cursor.executemany(
            "UPDATE coda_broker_messages SET claimed = %s, "
            "redelivered = coalesce(%s, redelivered) WHERE id = %s",
            [(claimed, redelivered, i) for i, (claimed, redelivered) in changes.flags.items()],
        )
    if changes.removed:
        cursor.executemany(
            "DELETE FROM coda_broker_messages WHERE id = %s", [(i,) for i in changes.removed]
        )


def _write_results(cursor: psycopg.Cursor[Any], changes: Changes) -> None:
    saved = [r for r in changes.results.values() if r is not None]
    if saved:
        cursor.executemany(
            UPSERT_RESULT, [(r.kind, r.id, r.state, r.value, r.expires_at, r.note) for r in saved]
        )
    forgotten = [key for key, r in changes.results.items() if r is None]
    if forgotten:
        cursor.executemany("DELETE FROM coda_broker_results WHERE kind = %s AND id = %s", forgotten)
    for group_id, chord in changes.chords.items():
        cursor.execute("DELETE FROM coda_broker_chord_parts WHERE group_id = %s", (group_id,))
        if chord is None:
            cursor.execute("DELETE FROM coda_broker_chords WHERE group_id = %s", (group_id,))
        else:
            members = _members.encode(chord.members)
            cursor.execute(UPSERT_CHORD, (group_id, members, chord.expires_at, chord.fired))
    parts = [(g, t, v) for g, parts in changes.parts.items() for t, v in parts.items()]
    if parts:
        cursor.executemany(UPSERT_PART, parts)
    for group_id in changes.fired:
        cursor.execute(
            "UPDATE coda_broker_chords SET fired = true WHERE group_id = %s", (group_id,)
        )
        cursor.execute("DELETE FROM coda_broker_chord_parts WHERE group_id = %s", (group_id,))


def _read_all(db: Connection) -> BrokerSnapshot:
    parts: dict[str, dict[str, bytes]] = {}
    for group_id, task_id, value in db.execute("SELECT * FROM coda_broker_chord_parts"):
        parts.setdefault(group_id, {})[task_id] = bytes(value)
    return BrokerSnapshot(
        exchanges=[
            StoredExchange(name, kind, bool(auto_delete))
            for name, kind, auto_delete in db.execute("SELECT * FROM coda_broker_exchanges")
        ],
        queues=[StoredQueue(*row) for row in db.execute("SELECT * FROM coda_broker_queues")],
        bindings=[
            StoredBinding(exchange, queue, key)
            for exchange, queue, key in db.execute(
                "SELECT exchange, queue, key FROM coda_broker_bindings ORDER BY seq"
            )
        ],
        messages=list(_messages(db.execute("SELECT * FROM coda_broker_messages ORDER BY id"))),
        results=[
            StoredResult(kind, i, state, None if value is None else bytes(value), expires, note)
            for kind, i, state, value, expires, note in db.execute(
                "SELECT * FROM coda_broker_results"
            )
        ],
        chords=[
            StoredChord(g, _decode_members.decode(members), expires, bool(fired), parts.get(g, {}))
            for g, members, expires, fired in db.execute("SELECT * FROM coda_broker_chords")
        ],
    )


def _messages(rows: Iterable[Any]) -> Iterable[StoredMessage]:
    for row in rows:
        message_id, queue, body, priority, expires_at, task_id, eta, redelivered, _ = row
        yield StoredMessage(
            int(message_id),
            queue,
            bytes(body),
            priority,
            expires_at,
            task_id,
            eta,
            bool(redelivered),
        )
