"""The SQLite store's small commits on the event loop, and its own checkpoints.

A small batch commits on the engine's thread when the commit thread is idle
(no hand-off, no wake-up); a large one, or any batch while the thread is
busy, goes to the thread as before. Automatic WAL checkpoints are off, so
that none runs inside a commit on the loop; the store queues its own on the
commit thread, and the WAL stays bounded.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from coda.messages import Accepted, Payload, Submit
from coda.supervisor.clock import ManualClock
from coda.supervisor.stores import SqliteStore, commits
from coda.supervisor.stores.sqlite import rows
from coda.supervisor.stores.sqlite import store as sqlite_store
from tests.stores.committed import wait_committed
from tests.stores.test_contract import ARGS, finished, task
from tests.unit.engine_fakes import FakePeer, make_engine


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite3")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(path: str, clock: ManualClock) -> Iterator[SqliteStore]:
    opened = SqliteStore(path, clock=clock)  # the default: small commits on the loop
    try:
        yield opened
    finally:
        opened.close()


def committed_ids(path: str) -> list[str]:
    """What another connection sees: only what is committed."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return sorted(row[0] for row in db.execute("SELECT id FROM jobs"))


def test_a_submit_is_committed_and_acknowledged_within_the_turn(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    engine = make_engine(clock, store)
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS))
    assert client.sent == []  # not before its commit...
    clock.settle()  # ...which runs on the loop: no commit thread to wait for
    (accepted,) = client.take()
    assert isinstance(accepted, Accepted)
    assert committed_ids(path) == [accepted.run_id]
    assert store.statistics()["commits_on_loop"] == store.commits


def test_a_large_batch_commits_on_the_thread(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    acked: list[bool] = []
    for i in range(sqlite_store.INLINE_ROWS + 1):
        store.save_job(task(f"j{i}"))
    store.after_commit(lambda: acked.append(True))
    clock.settle()
    assert acked == []  # handed to the thread
    wait_committed(store, clock)
    assert acked == [True] and len(committed_ids(path)) == sqlite_store.INLINE_ROWS + 1
    assert store.statistics()["commits_on_loop"] == 0


def test_a_batch_with_a_large_payload_commits_on_the_thread(
    store: SqliteStore, clock: ManualClock
) -> None:
    big = task("big")
    big.args = Payload("application/x-msgpack", "binary", memoryview(bytes(100 * 1024)))
    acked: list[bool] = []
    store.save_job(big)
    store.after_commit(lambda: acked.append(True))
    clock.settle()
    assert acked == []
    wait_committed(store, clock)
    assert acked == [True] and store.statistics()["commits_on_loop"] == 0


def test_a_small_batch_waits_behind_a_batch_in_flight_on_the_thread(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    order: list[str] = []
    for i in range(sqlite_store.INLINE_ROWS + 1):
        store.save_job(task(f"big{i}"))
    store.after_commit(lambda: order.append("large"))
    clock.settle()  # the large batch is on the thread
    store.save_job(task("small"))
    store.after_commit(lambda: order.append("small"))
    clock.settle()
    assert order == []  # the small one did not overtake it on the loop
    wait_committed(store, clock)
    assert order == ["large", "small"]
    assert "small" in committed_ids(path)


def test_a_failed_commit_on_the_loop_is_retried_later_and_holds_its_callbacks(
    path: str, store: SqliteStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = rows.Rows.write
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky_write(batch: rows.Rows, db: sqlite3.Connection) -> tuple[int, int]:
        if failures:
            raise failures.pop()
        return real_write(batch, db)

    monkeypatch.setattr(rows.Rows, "write", flaky_write)
    acked: list[str] = []
    store.save_job(task("a"))
    store.after_commit(lambda: acked.append("a"))
    clock.settle()  # the commit on the loop fails
    assert store.failed_commits == 1 and acked == [] and committed_ids(path) == []
    assert store.unavailable() is not None  # new work is refused meanwhile
    clock.advance(commits.RETRY_AFTER - 0.01)
    assert acked == []  # not retried before its time
    clock.advance(0.01)  # the retry, on the loop again
    assert acked == ["a"] and committed_ids(path) == ["a"]
    assert store.unavailable() is None


def test_while_retention_works_on_the_thread_commits_queue_behind_it(
    store: SqliteStore, clock: ManualClock
) -> None:
    store.save_job(finished(task("old"), at=1.0))
    wait_committed(store, clock)
    dropped: list[int] = []
    store.expire_soon(100.0, dropped.append)  # on the thread, on the writer's connection
    acked: list[bool] = []
    store.save_job(task("new"))
    store.after_commit(lambda: acked.append(True))
    clock.settle()
    assert acked == []  # not committed on the loop beside the thread's transaction
    while not (dropped and acked):
        clock.wait_threadsafe()
    assert dropped == [1] and acked == [True]


def test_checkpoints_keep_the_wal_bounded(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    commits_made = 3 * sqlite_store.CHECKPOINT_FRAMES
    for i in range(commits_made // 4):
        store.save_job(task(f"j{i}"))
        wait_committed(store, clock)
    while store.checkpoints < 2:  # the last one may still be on the thread
        clock.wait_threadsafe()
    assert store.checkpoints >= 2
    # without checkpoints the WAL would hold every page written: about 4 per commit
    assert os.stat(path + "-wal").st_size < 2 * sqlite_store.CHECKPOINT_FRAMES * 4096


def test_without_commits_on_the_loop_sqlite_checkpoints_by_itself(path: str) -> None:
    clock = ManualClock()
    store = SqliteStore(path, clock=clock, commit_on_loop=False)
    try:
        (pages,) = store._writer.execute("PRAGMA wal_autocheckpoint").fetchone()
        assert pages == 1000
        store.save_job(task("a"))
        store.after_commit(lambda: None)
        clock.settle()
        assert store.statistics()["commits_on_loop"] == 0
        wait_committed(store, clock)
    finally:
        store.close()
