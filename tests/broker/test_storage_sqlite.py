"""The broker's SQLite store beyond the contract: the file it shares with the
engine's store, and failed commits."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coda.broker.storage import (
    MemoryBrokerStore,
    SqliteBrokerStore,
    StoredMessage,
    StoredResult,
    open_broker_store,
)
from coda.broker.storage import sqlite as broker_sqlite
from coda.errors import ConfigurationError
from coda.supervisor.clock import ManualClock
from coda.supervisor.stores import SqliteStore, commits
from tests.stores.test_contract import task


def rows(path: str, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute(sql).fetchall()


def test_the_broker_keeps_its_tables_in_the_engines_file(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    engine = SqliteStore(path)  # holds the file's lock
    broker = SqliteBrokerStore(path)
    engine.save_job(task("job"))
    broker.put(StoredMessage(broker.new_message_id(), "celery", b"m"))
    broker.save_result(StoredResult("task", "t", "SUCCESS", b"r", 5000.0))
    broker.close()
    engine.close()
    assert rows(path, "SELECT id FROM jobs") == [("job",)]
    assert rows(path, "SELECT queue, body FROM broker_messages") == [("celery", b"m")]
    assert rows(path, "SELECT id FROM broker_results") == [("t",)]


def test_a_failed_commit_is_retried_and_confirms_nothing_until_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "state.sqlite3")
    clock = ManualClock()
    store = SqliteBrokerStore(path, clock=clock)
    real = broker_sqlite._write_changes
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky(db: sqlite3.Connection, changes: object) -> None:
        if failures:
            raise failures.pop()
        real(db, changes)  # type: ignore[arg-type]

    monkeypatch.setattr(broker_sqlite, "_write_changes", flaky)
    confirmed: list[str] = []
    first = StoredMessage(store.new_message_id(), "q", b"1")
    store.put(first)
    store.after_commit(lambda: confirmed.append("first"))
    clock.settle()
    clock.wait_threadsafe()  # that commit failed
    assert confirmed == [] and store.unavailable() == "OperationalError: disk I/O error"
    store.remove(first.id)  # acked meanwhile: written after its insert, in order
    second = StoredMessage(store.new_message_id(), "q", b"2")
    store.put(second)
    clock.advance(commits.RETRY_AFTER)
    clock.wait_threadsafe()
    assert confirmed == ["first"] and store.unavailable() is None
    assert rows(path, "SELECT body FROM broker_messages") == [(b"2",)]
    store.close()


def test_store_urls(tmp_path: Path) -> None:
    store = open_broker_store(f"sqlite:///{tmp_path}/x.sqlite3?synchronous=full")
    assert isinstance(store, SqliteBrokerStore)
    store.close()
    with pytest.raises(ConfigurationError, match="cannot keep its state in 'redis://x'"):
        open_broker_store("redis://x")
    assert isinstance(open_broker_store("postgresql://coda@db/coda"), MemoryBrokerStore)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "state.sqlite3")
    SqliteBrokerStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE broker_meta SET value = 99 WHERE key = 'schema'")
    with pytest.raises(ConfigurationError, match="schema version 99 is newer"):
        SqliteBrokerStore(path)
