"""What only the SQLite store does: group commit, the file, retention in
batches, recent jobs in memory; and the engine's write policy on it."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coda.errors import ConfigurationError
from coda.messages import (
    Accepted,
    Finished,
    Payload,
    RunWorkflow,
    Spawn,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine
from coda.supervisor.jobs import JobState
from coda.supervisor.stores import MemoryStore, SqliteStore, commits, open_store
from coda.supervisor.stores import buffered as store_module
from coda.supervisor.stores.sqlite import retention, rows
from coda.supervisor.stores.sqlite.schema import parse_sqlite_url
from tests.stores.test_contract import ARGS, RESULT, finished, flow, task
from tests.unit.engine_fakes import FakePeer, again, make_engine, runs, sent, worker


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite3")


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def store(path: str, clock: ManualClock) -> Iterator[SqliteStore]:
    """Every commit on the commit thread, as under load (the loop's own
    small commits are tested apart, below)."""
    opened = SqliteStore(path, clock=clock, commit_on_loop=False)
    try:
        yield opened
    finally:
        opened.close()


def committed(store: SqliteStore | Any, clock: ManualClock) -> None:
    """Drive the clock until everything saved so far is committed."""
    done: list[bool] = []
    store.after_commit(lambda: done.append(True))
    clock.settle()
    while not done:
        clock.wait_threadsafe()


@contextlib.contextmanager
def reopened(path: str) -> Iterator[SqliteStore]:
    """The store as the next supervisor sees it (no clock: writes commit at once)."""
    opened = SqliteStore(path)
    try:
        yield opened
    finally:
        opened.close()


def committed_rows(path: str, sql: str) -> list[tuple[object, ...]]:
    """What another connection sees: only what is committed."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute(sql).fetchall()


# -- group commit ---------------------------------------------------------------


def test_one_commit_per_turn_writes_each_job_once_in_its_last_state(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    before = store.commits
    jobs = [task(f"j{i}") for i in range(5)]
    for state in (JobState.QUEUED, JobState.RUNNING, JobState.DELAYED, JobState.QUEUED):
        for job in jobs:
            job.state = state
            store.save_job(job)
    store.set_cached(("run", "t", b"k"), "j0")
    assert committed_rows(path, "SELECT count(*) FROM jobs") == [(0,)]  # nothing yet
    assert store.get_job("j0") is jobs[0]  # reads see pending changes
    committed(store, clock)
    assert store.commits == before + 1
    assert committed_rows(path, "SELECT count(*), min(state) FROM jobs") == [(5, "queued")]


def test_after_commit_callbacks_run_once_their_rows_are_visible_to_others(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    seen: list[tuple[str, list[tuple[object, ...]]]] = []

    def note(label: str) -> None:
        store.after_commit(
            lambda: seen.append((label, committed_rows(path, "SELECT id FROM jobs")))
        )

    store.save_job(task("a"))
    note("first")
    clock.settle()  # the batch with "a" leaves for the commit thread
    store.save_job(task("b"))  # the next batch
    note("second")
    committed(store, clock)
    assert [label for label, _ in seen] == ["first", "second"]
    assert seen[0][1] == [("a",)]
    assert sorted(seen[1][1]) == [("a",), ("b",)]


def test_args_are_rewritten_only_when_replaced(
    path: str, store: SqliteStore, clock: ManualClock
) -> None:
    job = task("j")
    store.save_job(job)
    committed(store, clock)
    job.state = JobState.RUNNING
    store.save_job(job)
    committed(store, clock)
    job.args = Payload("application/json", "utf-8", b'{"retry": 2}')  # a retry with new args
    store.save_job(job)
    committed(store, clock)
    late = task("k")
    store.save_job(late)
    clock.settle()  # the batch is in flight with the first args...
    late.args = Payload("application/json", "utf-8", b'{"retry": 3}')  # ...replaced meanwhile
    store.save_job(late)
    committed(store, clock)
    store.close()
    with reopened(path) as again_:
        loaded = again_.get_job("j")
        assert loaded is not None and loaded.args.body == b'{"retry": 2}'
        assert loaded.state is JobState.RUNNING
        reloaded = again_.get_job("k")
        assert reloaded is not None and reloaded.args.body == b'{"retry": 3}'


def test_a_failed_commit_is_retried_later_and_holds_its_callbacks(
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
    clock.settle()
    clock.wait_threadsafe()  # the commit comes back failed
    assert store.failed_commits == 1 and acked == []
    assert committed_rows(path, "SELECT id FROM jobs") == []
    clock.advance(commits.RETRY_AFTER - 0.01)
    assert acked == []  # not retried before its time
    clock.advance(0.01)  # the retry leaves
    clock.wait_threadsafe()
    assert acked == ["a"]
    assert committed_rows(path, "SELECT id FROM jobs") == [("a",)]


# -- the file ---------------------------------------------------------------------


def test_expire_works_in_bounded_batches_past_spared_trees(
    path: str, store: SqliteStore, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "EXPIRE_BATCH", 3)
    batches: list[int] = []
    real_batch = retention.expire_batch

    def counted(*args: Any, **kwargs: Any) -> tuple[int, int, retention.Cursor | None]:
        outcome = real_batch(*args, **kwargs)
        batches.append(outcome[0])
        return outcome

    monkeypatch.setattr(retention, "expire_batch", counted)
    for i in range(8):
        child = task(f"c{i}", parent=f"r{i}")  # three are left running by their workflow
        store.save_job(child if i in (0, 1, 2) else finished(child, 1.0 + i))
        store.save_job(finished(flow(f"r{i}"), 1.0 + i))
    committed(store, clock)
    dropped: list[int] = []
    store.expire_soon(100.0, dropped.append)
    while not dropped:
        clock.wait_threadsafe()
    assert dropped == [10]  # r3..r7 and their children
    assert batches == [0, 6, 4]  # the first three trees are spared, not in the way


def test_one_supervisor_per_store_file(path: str) -> None:
    with reopened(path), pytest.raises(ConfigurationError, match="in use by another supervisor"):
        SqliteStore(path)
    with reopened(path):
        pass  # released on close


def test_store_urls(tmp_path: Path) -> None:
    assert parse_sqlite_url("sqlite:///rel/x.db") == ("rel/x.db", "NORMAL")
    assert parse_sqlite_url("sqlite:////abs/x.db?synchronous=full") == ("/abs/x.db", "FULL")
    for bad in ("sqlite://", "sqlite:///", "sqlite://host/x.db", "sqlite:///x.db?cache=1"):
        with pytest.raises(ConfigurationError):
            parse_sqlite_url(bad)
    with pytest.raises(ConfigurationError, match="unknown store"):
        open_store("redis://localhost")
    assert isinstance(open_store("memory://"), MemoryStore)
    opened = open_store(f"sqlite:///{tmp_path}/a/b.sqlite3")
    assert isinstance(opened, SqliteStore)
    opened.close()


def test_recently_finished_jobs_are_read_from_memory_within_a_byte_budget(
    store: SqliteStore, clock: ManualClock
) -> None:
    jobs = [finished(task(f"j{i}"), 1.0) for i in range(3)]
    big = finished(task("big"), 1.0)
    big.args = Payload("application/x-msgpack", "binary", b"x" * (store_module.RECENT_BYTES // 2))
    for job in [*jobs, big]:
        store.save_job(job)
    committed(store, clock)
    assert store.get_job("j2") is jobs[2]  # kept: the very object, no read
    stats = store.statistics()
    assert stats["recent_jobs"] == 4 and stats["recent_bytes"] > store_module.RECENT_BYTES // 2
    for i in range(3):  # its arguments count: two more like it push the oldest out
        more = finished(task(f"big{i}"), 1.0)
        more.args = big.args
        store.save_job(more)
    committed(store, clock)
    assert store.statistics()["recent_bytes"] <= store_module.RECENT_BYTES
    oldest = store.get_job("j0")  # evicted: read back from the file
    assert oldest is not None and oldest is not jobs[0] and oldest.result == RESULT
    dropped: list[int] = []
    store.expire_soon(2.0, dropped.append)  # all finished at 1.0
    while not dropped:
        clock.wait_threadsafe()
    assert dropped == [7]
    assert store.get_job("j2") is None  # expired: not served from memory either


# -- under the engine ---------------------------------------------------------------


@pytest.fixture
def engine(store: SqliteStore, clock: ManualClock) -> Engine:
    return make_engine(clock, store)


def test_a_submit_is_acknowledged_only_once_committed(
    path: str, engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS))
    clock.settle()
    assert client.sent == []  # the commit is still on its thread
    committed(engine.store, clock)
    (accepted,) = client.take()
    assert isinstance(accepted, Accepted)
    assert committed_rows(path, "SELECT id FROM jobs") == [(accepted.run_id,)]


def test_a_step_answered_in_the_turn_it_finished_waits_for_its_commit(
    path: str, engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1, tasks=1)
    engine.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    committed(engine.store, clock)
    (run,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
    spawn = Spawn(req_id=2, run_id=run.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")
    engine.spawn(w, spawn)
    committed(engine.store, clock)
    (step,) = runs(w)
    engine.task_done(w, TaskDone(job_id=step.job_id, result=RESULT))
    engine.spawn(w, again(spawn, 3))  # a rerun asks again, same turn
    assert sent(w) == []  # neither answer before the result is committed
    committed(engine.store, clock)
    answers = [m for m in sent(w) if isinstance(m, Finished)]
    assert sorted(m.req_id for m in answers) == [2, 3]
    query = f"SELECT state FROM jobs WHERE id = '{step.job_id}'"
    assert committed_rows(path, query) == [("succeeded",)]


def test_a_new_generation_requeues_the_leases_of_the_dead_one(path: str) -> None:
    first_clock = ManualClock()
    first_store = SqliteStore(path, clock=first_clock)
    first = make_engine(first_clock, first_store)
    w = worker(first, 1, tasks=1)
    for i in range(3):
        first.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
    committed(first_store, first_clock)
    committed(first_store, first_clock)  # the lease of the pump that followed
    assert len(runs(w)) == 1
    first_store.close()  # the supervisor dies: one job RUNNING on worker 1, two QUEUED
    assert sorted(committed_rows(path, "SELECT state FROM jobs")) == [
        ("queued",),
        ("queued",),
        ("running",),
    ]
    clock = ManualClock()
    second_store = SqliteStore(path, clock=clock)
    try:
        second = make_engine(clock, second_store)
        assert second.recover() == 3
        w2 = worker(second, 9, tasks=3)
        clock.settle()
        retaken = runs(w2)
        assert len(retaken) == 3
        for message in retaken:
            second.task_done(w2, TaskDone(job_id=message.job_id, result=RESULT))
        committed(second_store, clock)
    finally:
        second_store.close()
    assert committed_rows(path, "SELECT DISTINCT state FROM jobs") == [("succeeded",)]


def test_a_workflows_tasks_are_written_once_finished_or_when_it_ends(
    path: str, engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1, tasks=2)
    engine.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    committed(engine.store, clock)
    (run,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
    engine.spawn(w, Spawn(1, run.run_id, "task", "t", ARGS, cache_key=b"done"))
    engine.spawn(w, Spawn(2, run.run_id, "task", "t", ARGS, cache_key=b"left"))
    committed(engine.store, clock)
    done_step, left_step = runs(w)
    assert committed_rows(path, "SELECT id FROM jobs") == [(run.run_id,)]  # a rerun respawns
    engine.task_done(w, TaskDone(job_id=done_step.job_id, result=RESULT))
    committed(engine.store, clock)
    query = f"SELECT body, args FROM jobs WHERE id = '{done_step.job_id}'"
    ((body, args),) = committed_rows(path, query)
    written = rows.decode_job(body, args)  # type: ignore[arg-type]
    assert written.state is JobState.SUCCEEDED and written.result == RESULT
    assert written.args.body == b""  # never read again: not written
    engine.workflow_done(w, WorkflowDone(run.run_id, 1, result=RESULT))  # leaves "left" running
    committed(engine.store, clock)
    unfinished = committed_rows(path, "SELECT id FROM jobs WHERE finished_at IS NULL")
    assert unfinished == [(left_step.job_id,)]
    engine.store.close()
    with reopened(path) as next_store:
        recovered = next_store.get_job(left_step.job_id)
        assert recovered is not None and recovered.args == ARGS  # recoverable on its own


def test_while_commits_fail_new_work_is_refused_with_the_reason(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = rows.Rows.write
    failing = [True]

    def full_disk(batch: rows.Rows, db: sqlite3.Connection) -> tuple[int, int]:
        if failing:
            raise sqlite3.OperationalError("database or disk is full")
        return real_write(batch, db)

    monkeypatch.setattr(rows.Rows, "write", full_disk)
    first, second = FakePeer(), FakePeer()
    engine.submit(first, Submit(req_id=1, name="t", args=ARGS))
    clock.settle()
    clock.wait_threadsafe()  # that commit failed: the submit waits, unacknowledged
    engine.submit(second, Submit(req_id=2, name="t", args=ARGS))
    (refusal,) = second.take()
    assert refusal.code == "store_unavailable"  # type: ignore[union-attr]
    assert "database or disk is full" in refusal.message  # type: ignore[union-attr]
    assert first.take() == []
    failing.clear()  # the disk has room again: the retry commits, the first is accepted
    clock.advance(commits.RETRY_AFTER)
    clock.wait_threadsafe()
    assert [type(m) for m in first.take()] == [Accepted]
    engine.submit(second, Submit(req_id=3, name="t", args=ARGS))
    committed(engine.store, clock)
    assert [type(m) for m in second.take()] == [Accepted]
