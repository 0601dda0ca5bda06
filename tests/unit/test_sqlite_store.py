"""The SQLite store on its own, and under the scheduler with fake peers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from coda.errors import ConfigurationError
from coda.messages import (
    Accepted,
    Failure,
    Finished,
    Payload,
    RunTask,
    RunWorkflow,
    Spawn,
    Submit,
    TaskDone,
)
from coda.supervisor import sqlite_file, sqlite_store
from coda.supervisor.jobs import Job, JobState
from coda.supervisor.memory_store import MemoryStore
from coda.supervisor.scheduler import Scheduler
from coda.supervisor.sqlite_file import parse_sqlite_url
from coda.supervisor.sqlite_store import SqliteStore
from coda.supervisor.store import Store
from coda.supervisor.supervisor import open_store
from tests.unit.test_scheduler import ARGS, RESULT, FakePeer, lookup, sent, turn, worker


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "state.sqlite3")


def run(path: str, test: Callable[[SqliteStore], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(path)
        try:
            await test(store)
        finally:
            store.close()

    asyncio.run(main())


@contextlib.contextmanager
def reopened(path: str) -> Iterator[SqliteStore]:
    """The store as the next supervisor sees it (no event loop: writes commit at once)."""
    store = SqliteStore(path)
    try:
        yield store
    finally:
        store.close()


async def committed(store: Store) -> None:
    """Wait until everything saved so far is committed."""
    done = asyncio.get_running_loop().create_future()
    store.after_commit(lambda: done.set_result(None))
    await asyncio.wait_for(done, 10)


def job(job_id: str, parent: str | None = None) -> Job:
    return Job(id=job_id, kind="task", name="t", args=ARGS, queue="default", parent_run=parent)


def flow(job_id: str, parent: str | None = None) -> Job:
    return dataclasses.replace(job(job_id, parent), kind="workflow")


def finish(j: Job, at: float) -> Job:
    j.state, j.result, j.finished_at = JobState.SUCCEEDED, RESULT, at
    return j


def committed_rows(path: str, sql: str) -> list[tuple[object, ...]]:
    """What another connection sees: only what is committed."""
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


# -- rows ---------------------------------------------------------------------


def test_every_job_field_round_trips(path: str) -> None:
    full = Job(
        id="r1",
        kind="workflow",
        name="pkg.flow",
        args=Payload("application/json", "utf-8", b'{"x": 1}'),
        queue="special",
        parent_run="p0",
        cache_key=b"\x91\xa1k",
        attempt=3,
        losses=2,
        state=JobState.DELAYED,
        result=RESULT,
        failure=Failure("ValueError", "bad", "Traceback ...", retry_in=1.5),
        worker=7,
        ready_at=1234.5,
        created_at=1000.25,
        finished_at=None,
    )
    defaults = Job(id="x", kind="task", name="n", args=ARGS, queue="q")
    names = {f.name for f in dataclasses.fields(Job)}
    changed = {name for name in names if getattr(full, name) != getattr(defaults, name)}
    assert changed == names - {"finished_at"}  # every field but one is set, that one later

    async def save(store: SqliteStore) -> None:
        store.save_job(full)
        await committed(store)

    run(path, save)
    with reopened(path) as store:
        loaded = store.get_job("r1")
        assert loaded is not None and loaded is not full
        assert dataclasses.asdict(loaded) == dataclasses.asdict(full)
        finish(loaded, 2000.0)
        store.save_job(loaded)
    with reopened(path) as store:
        again = store.get_job("r1")
        assert again is not None and dataclasses.asdict(again) == dataclasses.asdict(loaded)
        assert store.get_job("nope") is None


def test_args_are_rewritten_only_when_replaced(path: str) -> None:
    async def check(store: SqliteStore) -> None:
        j = job("j")
        store.save_job(j)
        await committed(store)
        j.state = JobState.RUNNING
        store.save_job(j)
        await committed(store)
        j.args = Payload("application/json", "utf-8", b'{"retry": 2}')  # a retry with new args
        store.save_job(j)
        await committed(store)
        k = job("k")
        store.save_job(k)
        store._flush()  # batch in flight with the first args...
        k.args = Payload("application/json", "utf-8", b'{"retry": 3}')  # ...replaced meanwhile
        store.save_job(k)
        await committed(store)

    run(path, check)
    with reopened(path) as store:
        loaded = store.get_job("j")
        assert loaded is not None and loaded.args.body == b'{"retry": 2}'
        assert loaded.state is JobState.RUNNING
        late = store.get_job("k")
        assert late is not None and late.args.body == b'{"retry": 3}'


# -- group commit and after_commit ---------------------------------------------


def test_one_commit_per_turn_and_a_job_is_written_in_its_last_state(path: str) -> None:
    async def check(store: SqliteStore) -> None:
        before = store.commits
        jobs = [job(f"j{i}") for i in range(5)]
        for state in (JobState.QUEUED, JobState.RUNNING, JobState.DELAYED, JobState.QUEUED):
            for j in jobs:
                j.state = state
                store.save_job(j)
        jobs[0].attempt = 2
        store.save_job(jobs[0])
        store.set_cached(("run", "t", b"k"), "j0")
        assert committed_rows(path, "SELECT count(*) FROM jobs") == [(0,)]  # nothing yet
        assert store.get_job("j0") is jobs[0]  # reads see pending changes
        assert store.get_cached(("run", "t", b"k")) == "j0"
        await committed(store)
        assert store.commits == before + 1
        assert committed_rows(path, "SELECT count(*), min(state) FROM jobs") == [(5, "queued")]

    run(path, check)


def test_after_commit_runs_in_order_once_the_rows_are_visible(path: str) -> None:
    async def check(store: SqliteStore) -> None:
        seen: list[tuple[str, list[tuple[object, ...]]]] = []

        def note(label: str) -> Callable[[], None]:
            return lambda: seen.append((label, committed_rows(path, "SELECT id FROM jobs")))

        store.after_commit(note("idle"))  # nothing pending: at once
        assert seen == [("idle", [])]
        store.save_job(job("a"))
        store.after_commit(note("first"))
        store.after_commit(note("second"))
        assert len(seen) == 1
        await turn()
        store.save_job(job("b"))  # another turn: the next batch
        store.after_commit(note("third"))
        await committed(store)
        assert [label for label, _ in seen] == ["idle", "first", "second", "third"]
        assert ("a",) in seen[1][1] and ("b",) not in seen[1][1]
        assert ("b",) in seen[3][1]

    run(path, check)


def test_a_failed_commit_is_retried_and_holds_its_callbacks(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "RETRY_AFTER", 0.01)
    real_write = sqlite_file.Rows.write
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky_write(rows: sqlite_file.Rows, db: sqlite3.Connection) -> tuple[int, int]:
        if failures:
            raise failures.pop()
        return real_write(rows, db)

    monkeypatch.setattr(sqlite_file.Rows, "write", flaky_write)

    async def check(store: SqliteStore) -> None:
        acked: list[str] = []
        store.save_job(job("a"))
        store.after_commit(lambda: acked.append("a"))
        for _ in range(5):
            await turn()
        assert store.failed_commits == 1 and acked == []
        await committed(store)
        assert acked == ["a"]
        assert committed_rows(path, "SELECT id FROM jobs") == [("a",)]

    run(path, check)


# -- recovery, retention, the file ---------------------------------------------


def test_unfinished_jobs_are_handed_back_oldest_first(path: str) -> None:
    with reopened(path) as store:
        for i, state in enumerate([JobState.RUNNING, JobState.QUEUED, JobState.DELAYED]):
            j = job(f"u{i}")
            j.state, j.created_at = state, 100.0 - i
            store.save_job(j)
        store.save_job(finish(job("done"), time.time()))
    with reopened(path) as store:
        assert [j.id for j in store.unfinished_jobs()] == ["u2", "u1", "u0"]


def test_expire_drops_old_finished_trees_and_their_cache_entries(path: str) -> None:
    now = time.time()
    with reopened(path) as store:
        old_root = finish(flow("old"), now - 100)
        child = finish(flow("child", parent="old"), now - 100)
        grandchild = finish(job("grandchild", parent="child"), now - 100)
        other_root = finish(flow("other"), now - 100)
        straggler = flow("straggler", parent="other")  # a child workflow left running
        recent = finish(job("recent"), now)
        running = job("running")
        for j in (old_root, child, grandchild, other_root, straggler, recent, running):
            store.save_job(j)
        store.set_cached(("old", "t", b"k"), "child")
        store.set_cached(("child", "t", b"k"), "grandchild")
        store.set_cached(("other", "t", b"k"), "straggler")
        store.set_cached(("recent", "t", b"k"), "x")
        assert store.expire(now - 10) == 3
        assert store.statistics()["cache_entries"] == 2
        assert store.get_job("old") is None and store.get_job("grandchild") is None
        assert store.get_cached(("old", "t", b"k")) is None
        assert store.get_cached(("recent", "t", b"k")) == "x"
        # the other tree waits for its straggler, which may still spawn
        assert store.get_cached(("other", "t", b"k")) == "straggler"
        late = job("late", parent="straggler")
        store.save_job(late)
        assert store.expire(now - 10) == 0
        store.save_job(finish(straggler, now))
        store.save_job(finish(late, now))
        assert store.expire(now - 10) == 3  # other, straggler, late
        stats = store.statistics()
        assert (stats["jobs"], stats["cache_entries"], stats["unfinished_jobs"]) == (2, 1, 1)
    with reopened(path) as store:  # the counts kept in memory match the file
        stats = store.statistics()
        assert (stats["jobs"], stats["cache_entries"]) == (2, 1)
        assert {j.id for j in store.unfinished_jobs()} == {"running"}


def test_expire_works_in_bounded_batches_past_spared_trees(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "EXPIRE_BATCH", 3)
    batches: list[int] = []
    real_batch = sqlite_file.expire_batch

    def counted(*args: Any) -> tuple[int, int, sqlite_file.Cursor | None]:
        result = real_batch(*args)
        batches.append(result[0])
        return result

    monkeypatch.setattr(sqlite_file, "expire_batch", counted)

    async def check(store: SqliteStore) -> None:
        for i in range(8):
            child = job(f"c{i}", parent=f"r{i}")  # three are left running by their workflow
            store.save_job(child if i in (0, 1, 2) else finish(child, 1.0 + i))
            store.save_job(finish(flow(f"r{i}"), 1.0 + i))
        await committed(store)
        done = asyncio.get_running_loop().create_future()
        store.expire_soon(100.0, done.set_result)
        assert await asyncio.wait_for(done, 10) == 10  # r3..r7 and their children
        assert batches == [0, 6, 4]  # the first three trees are spared, not in the way

    run(path, check)


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
    store = open_store(f"sqlite:///{tmp_path}/a/b.sqlite3")
    assert isinstance(store, SqliteStore)
    store.close()


# -- under the scheduler ----------------------------------------------------------


def scheduled(path: str, test: Callable[[Scheduler], Awaitable[None]]) -> None:
    async def main() -> None:
        store = SqliteStore(path)
        scheduler = Scheduler(store, lookup, accept_content=frozenset({ARGS.content_type}))
        try:
            await test(scheduler)
        finally:
            store.close()

    asyncio.run(main())


def test_submit_is_acknowledged_only_once_committed(path: str) -> None:
    async def check(s: Scheduler) -> None:
        client = FakePeer()
        s.submit(client, Submit(req_id=1, name="t", args=ARGS))
        assert client.sent == []
        await committed(s.store)
        (accepted,) = client.take()
        assert isinstance(accepted, Accepted)
        assert committed_rows(path, "SELECT id FROM jobs") == [(accepted.run_id,)]

    scheduled(path, check)


def test_a_cache_hit_on_a_result_of_this_turn_waits_for_its_commit(path: str) -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, tasks=1)
        s.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
        await committed(s.store)
        await turn()
        (flow,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
        spawn = Spawn(
            req_id=2, run_id=flow.run_id, kind="task", name="t", args=ARGS, cache_key=b"k"
        )
        s.spawn(w, spawn)
        await committed(s.store)
        await turn()
        (task,) = [m for m in sent(w) if isinstance(m, RunTask)]
        s.task_done(w, TaskDone(job_id=task.job_id, result=RESULT))
        s.spawn(w, Spawn(**{**_fields(spawn), "req_id": 3}))  # a rerun asks again, same turn
        assert sent(w) == []  # neither answer before the result is committed
        await committed(s.store)
        answers = [m for m in sent(w) if isinstance(m, Finished)]
        assert sorted(m.req_id for m in answers) == [2, 3]
        assert committed_rows(path, f"SELECT state FROM jobs WHERE id = '{task.job_id}'") == [
            ("succeeded",)
        ]

    scheduled(path, check)


def test_a_new_generation_requeues_the_leases_of_the_dead_one(path: str) -> None:
    async def first_life(s: Scheduler) -> None:
        w = worker(s, 1, tasks=1)
        for i in range(3):
            s.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
        await committed(s.store)
        await turn()
        await committed(s.store)
        assert len([m for m in sent(w) if isinstance(m, RunTask)]) == 1
        # the supervisor dies here: one job RUNNING on worker 1, two QUEUED

    scheduled(path, first_life)
    assert sorted(committed_rows(path, "SELECT state FROM jobs")) == [
        ("queued",),
        ("queued",),
        ("running",),
    ]

    async def second_life(s: Scheduler) -> None:
        assert s.recover() == 3
        w = worker(s, 9, tasks=3)
        await turn()
        runs = [m for m in sent(w) if isinstance(m, RunTask)]
        assert len(runs) == 3
        for m in runs:
            s.task_done(w, TaskDone(job_id=m.job_id, result=RESULT))
        await committed(s.store)

    scheduled(path, second_life)
    assert committed_rows(path, "SELECT DISTINCT state FROM jobs") == [("succeeded",)]


def test_draining_refuses_submits_and_reports_idle(path: str) -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, tasks=1)
        s.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS))
        s.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS))
        await committed(s.store)
        await turn()
        (task,) = [m for m in sent(w) if isinstance(m, RunTask)]
        idle: list[int] = []
        s.drain(lambda: idle.append(s.in_flight()))
        late = FakePeer()
        s.submit(late, Submit(req_id=3, name="t", args=ARGS))
        assert [getattr(m, "code", None) for m in late.take()] == ["shutting_down"]
        await turn()
        assert idle == [] and s.in_flight() == 1
        s.task_done(w, TaskDone(job_id=task.job_id, result=RESULT))
        await turn()
        assert idle == [0]
        assert sent(w) == []  # the queued job was not started
        s.worker_left(1)
        await committed(s.store)

    scheduled(path, check)
    assert sorted(committed_rows(path, "SELECT state FROM jobs")) == [("queued",), ("succeeded",)]


def _fields(spawn: Spawn) -> dict[str, object]:
    return {f: getattr(spawn, f) for f in spawn.__struct_fields__}


def test_a_workflows_tasks_are_written_once_finished_or_when_it_ends(path: str) -> None:
    async def check(store: SqliteStore) -> None:
        run_job = flow("run")
        store.save_job(run_job)
        done, left = job("done", parent="run"), job("left", parent="run")
        store.save_job(done)
        store.save_job(left)
        store.set_cached(("run", "t", b"k"), "done")
        await committed(store)
        assert [j.id for j in store.unfinished_jobs()] == ["run"]  # a rerun respawns them
        store.save_job(finish(done, 5.0))
        await committed(store)
        with contextlib.closing(sqlite3.connect(path)) as db:
            body, args = db.execute("SELECT body, args FROM jobs WHERE id = 'done'").fetchone()
        written = sqlite_file.decode_job(body, args)
        assert written.result == RESULT
        assert written.args.body == b""  # never read again: not written
        assert [step[2].id for step in store.cached_steps("run")] == ["done"]
        store.save_job(finish(run_job, 6.0))  # ends without awaiting "left"
        await committed(store)
        assert [j.id for j in store.unfinished_jobs()] == ["left"]
        recovered = store.get_job("left")
        assert recovered is not None and recovered.args == ARGS  # recoverable on its own

    run(path, check)


def test_recently_finished_jobs_are_read_from_memory(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_store, "RECENT_JOBS", 2)

    async def check(store: SqliteStore) -> None:
        jobs = [finish(job(f"j{i}"), 1.0) for i in range(3)]
        for j in jobs:
            store.save_job(j)
        await committed(store)
        assert store.get_job("j2") is jobs[2]  # kept: the very object, no read
        assert store.get_job("j1") is jobs[1]
        oldest = store.get_job("j0")  # evicted: read back from the file
        assert oldest is not None and oldest is not jobs[0] and oldest.result == RESULT
        done = asyncio.get_running_loop().create_future()
        store.expire_soon(2.0, done.set_result)  # all three finished at 1.0
        assert await asyncio.wait_for(done, 10) == 3
        assert store.get_job("j2") is None  # expired: not served from memory either

    run(path, check)
