"""The store contract (coda/supervisor/stores/base.py), run against every store."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

from coda.messages import Failure, Payload
from coda.supervisor.jobs import Job, JobState
from coda.supervisor.stores import Store
from coda.supervisor.stores.base import ScheduleMark
from tests.stores.conftest import StoreUnderTest

ARGS = Payload("application/x-msgpack", "binary", b"\x80")
RESULT = Payload("application/x-msgpack", "binary", b"\x2a")


def now_and_reopened(subject: StoreUnderTest) -> Iterator[Store]:
    """The store, then (for durable ones) the store the next supervisor opens."""
    yield subject.store
    if subject.reopen is not None:
        yield subject.reopen()


def task(job_id: str, parent: str | None = None, created_at: float = 1.0) -> Job:
    return Job(
        id=job_id,
        kind="task",
        name="t",
        args=ARGS,
        queue="default",
        parent_run=parent,
        created_at=created_at,
    )


def flow(job_id: str, parent: str | None = None, created_at: float = 1.0) -> Job:
    return dataclasses.replace(task(job_id, parent, created_at), kind="workflow")


def finished(job: Job, at: float, failed: bool = False) -> Job:
    job.state = JobState.FAILED if failed else JobState.SUCCEEDED
    job.result = None if failed else RESULT
    job.failure = Failure("E", "boom") if failed else None
    job.finished_at = at
    return job


def every_field_set() -> Job:
    return Job(
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


def test_a_saved_job_reads_back_with_every_field(subject: StoreUnderTest) -> None:
    full = every_field_set()
    subject.store.save_job(full)
    subject.committed()
    loaded = subject.store.get_job("r1")
    assert loaded is not None and dataclasses.asdict(loaded) == dataclasses.asdict(full)
    assert subject.store.get_job("unknown") is None
    if subject.reopen is not None:  # and from the medium, by the next supervisor
        again = subject.reopen().get_job("r1")
        assert again is not None and dataclasses.asdict(again) == dataclasses.asdict(full)


def test_the_latest_saved_state_wins(subject: StoreUnderTest) -> None:
    job = task("j")
    for state in (JobState.QUEUED, JobState.RUNNING, JobState.DELAYED, JobState.QUEUED):
        job.state = state
        subject.store.save_job(job)
    job.attempt = 2
    subject.store.save_job(job)
    subject.committed()
    for store in now_and_reopened(subject):
        loaded = store.get_job("j")
        assert loaded is not None and (loaded.state, loaded.attempt) == (JobState.QUEUED, 2)


def test_a_copy_read_back_and_saved_replaces_the_job(subject: StoreUnderTest) -> None:
    subject.store.save_job(task("j"))
    subject.committed()
    copy = dataclasses.replace(task("j"), state=JobState.RUNNING, attempt=3)
    subject.store.save_job(copy)
    subject.committed()
    for store in now_and_reopened(subject):
        loaded = store.get_job("j")
        assert loaded is not None and (loaded.state, loaded.attempt) == (JobState.RUNNING, 3)


def test_a_job_saved_without_its_arguments_keeps_its_outcome(subject: StoreUnderTest) -> None:
    step = finished(task("s", parent="run"), at=5.0)
    subject.store.save_job(step, with_args=False)
    subject.committed()
    for store in now_and_reopened(subject):
        loaded = store.get_job("s")
        assert loaded is not None
        assert (loaded.state, loaded.result, loaded.finished_at) == (
            JobState.SUCCEEDED,
            RESULT,
            5.0,
        )


def test_after_commit_runs_at_once_when_nothing_is_pending_else_in_order(
    subject: StoreUnderTest,
) -> None:
    seen: list[str] = []
    subject.store.after_commit(lambda: seen.append("idle"))
    assert seen == ["idle"]
    subject.store.save_job(task("a"))
    subject.store.after_commit(lambda: seen.append("first"))
    subject.store.after_commit(lambda: seen.append("second"))
    subject.committed()
    assert seen == ["idle", "first", "second"]


def test_cache_entries_point_at_jobs_and_a_newer_job_replaces_a_failed_one(
    subject: StoreUnderTest,
) -> None:
    store = subject.store
    assert store.get_cached(("run", "t", b"k")) is None
    store.save_job(finished(task("first", parent="run", created_at=1.0), at=2.0, failed=True))
    store.set_cached(("run", "t", b"k"), "first")
    assert store.get_cached(("run", "t", b"k")) == "first"  # reads see unwritten changes
    subject.committed()
    store.save_job(task("second", parent="run", created_at=3.0))
    store.set_cached(("run", "t", b"k"), "second")
    subject.committed()
    assert store.get_cached(("run", "t", b"k")) == "second"
    assert store.get_cached(("run", "t", b"other")) is None
    assert store.get_cached(("other-run", "t", b"k")) is None
    if subject.reopen is not None:
        assert subject.reopen().get_cached(("run", "t", b"k")) == "second"


def test_cached_steps_are_a_runs_entries_with_their_jobs_oldest_first(
    subject: StoreUnderTest,
) -> None:
    store = subject.store
    for name, created in (("late", 3.0), ("early", 1.0), ("middle", 2.0)):
        store.save_job(finished(task(name, parent="run", created_at=created), at=4.0))
        store.set_cached(("run", name, b"k"), name)
    store.save_job(finished(task("elsewhere", parent="other"), at=4.0))
    store.set_cached(("other", "t", b"k"), "elsewhere")
    store.set_cached(("run", "ghost", b"k"), "never-saved")  # its job is unknown: left out
    subject.committed()
    steps = store.cached_steps("run")
    assert [(name, key, job.id) for name, key, job in steps] == [
        ("early", b"k", "early"),
        ("middle", b"k", "middle"),
        ("late", b"k", "late"),
    ]
    assert all(job.result == RESULT for _, _, job in steps)
    assert store.cached_steps("nothing") == []


def test_unfinished_jobs_come_back_oldest_first(subject: StoreUnderTest) -> None:
    store = subject.store
    for i, state in enumerate([JobState.RUNNING, JobState.QUEUED, JobState.DELAYED]):
        job = task(f"u{i}", created_at=100.0 - i)
        job.state = state
        store.save_job(job)
    store.save_job(finished(task("done", created_at=1.0), at=2.0))
    subject.committed()
    assert [job.id for job in store.unfinished_jobs()] == ["u2", "u1", "u0"]
    if subject.reopen is not None:
        assert [job.id for job in subject.reopen().unfinished_jobs()] == ["u2", "u1", "u0"]


def test_expire_drops_old_finished_trees_with_their_cache_entries(
    subject: StoreUnderTest,
) -> None:
    store = subject.store
    for job in (
        finished(flow("old"), at=10.0),
        finished(flow("child", parent="old"), at=10.0),
        finished(task("grandchild", parent="child"), at=10.0),
        finished(task("recent"), at=100.0),
        task("running"),
    ):
        store.save_job(job)
    store.set_cached(("old", "t", b"k"), "child")
    store.set_cached(("child", "t", b"k"), "grandchild")
    store.set_cached(("recent", "t", b"k"), "recent")
    subject.committed()
    assert store.expire(50.0) == 3
    assert store.get_job("old") is None and store.get_job("grandchild") is None
    assert store.get_cached(("old", "t", b"k")) is None
    assert store.get_cached(("child", "t", b"k")) is None
    assert store.get_cached(("recent", "t", b"k")) == "recent"
    assert {job.id for job in store.unfinished_jobs()} == {"running"}
    stats = store.statistics()
    assert (stats["jobs"], stats["cache_entries"]) == (2, 1)


def test_expire_keeps_a_tree_while_one_of_its_jobs_is_unfinished(
    subject: StoreUnderTest,
) -> None:
    store = subject.store
    root = finished(flow("root"), at=10.0)
    straggler = task("straggler", parent="root")  # a task its finished workflow left running
    store.save_job(root)
    store.save_job(straggler)
    store.set_cached(("root", "t", b"k"), "straggler")
    subject.committed()
    assert store.expire(50.0) == 0
    assert store.get_job("root") is not None and store.get_job("straggler") is not None
    assert store.get_cached(("root", "t", b"k")) == "straggler"
    store.save_job(finished(straggler, at=60.0))
    subject.committed()
    assert store.expire(50.0) == 2  # the root finished long ago; its tree is done now
    assert store.get_job("straggler") is None


def test_expire_soon_reports_what_it_dropped(subject: StoreUnderTest) -> None:
    for i in range(5):
        subject.store.save_job(finished(task(f"j{i}"), at=float(i)))
    subject.committed()
    dropped: list[int] = []
    subject.store.expire_soon(3.0, dropped.append)
    subject.clock.settle()
    while not dropped:
        subject.clock.wait_threadsafe()
    assert dropped == [3]
    assert subject.store.statistics()["jobs"] == 2


def test_list_runs_is_newest_first_with_filters_and_a_limit(subject: StoreUnderTest) -> None:
    store = subject.store
    for i in range(6):
        run = flow(f"r{i}", created_at=10.0 + i)
        run.name = "even" if i % 2 == 0 else "odd"
        store.save_job(finished(run, at=20.0 + i, failed=i == 4) if i >= 3 else run)
    store.save_job(task("child", parent="r5", created_at=30.0))  # not a run: a step
    subject.committed()
    assert [r.id for r in store.list_runs(state=None, name=None, since=None, limit=10)] == [
        "r5",
        "r4",
        "r3",
        "r2",
        "r1",
        "r0",
    ]
    assert [r.id for r in store.list_runs(state=None, name=None, since=None, limit=2)] == [
        "r5",
        "r4",
    ]
    assert [r.id for r in store.list_runs(state="failed", name=None, since=None, limit=10)] == [
        "r4"
    ]
    assert [r.id for r in store.list_runs(state=None, name="even", since=None, limit=2)] == [
        "r4",
        "r2",
    ]
    assert [r.id for r in store.list_runs(state=None, name=None, since=13.0, limit=10)] == [
        "r5",
        "r4",
        "r3",
    ]


def test_children_are_what_a_run_spawned_oldest_first(subject: StoreUnderTest) -> None:
    store = subject.store
    store.save_job(flow("run"))
    for name, created in (("second", 3.0), ("first", 2.0)):
        store.save_job(finished(task(name, parent="run", created_at=created), at=4.0))
    store.save_job(task("elsewhere", parent="other"))
    subject.committed()
    assert [job.id for job in store.children("run")] == ["first", "second"]
    assert store.children("nobody") == []


def test_schedule_marks_never_move_back_and_outlive_a_restart(subject: StoreUnderTest) -> None:
    store = subject.store
    assert store.schedule_marks() == {}
    store.save_schedule_mark("hourly", ScheduleMark(covered=100.0))
    store.save_schedule_mark("hourly", ScheduleMark(covered=200.0, last_tick=180.0))
    store.save_schedule_mark("daily", ScheduleMark(covered=50.0, last_tick=40.0))
    subject.committed()
    store.save_schedule_mark("hourly", ScheduleMark(covered=150.0, last_tick=120.0))  # older
    store.save_schedule_mark("daily", ScheduleMark(covered=60.0))  # no tick run since
    subject.committed()
    expected = {
        "hourly": ScheduleMark(covered=200.0, last_tick=180.0),
        "daily": ScheduleMark(covered=60.0, last_tick=40.0),
    }
    for opened in now_and_reopened(subject):
        assert opened.schedule_marks() == expected
