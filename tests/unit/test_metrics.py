"""The supervisor's Prometheus metrics, with the engine driven in-process.

Each test runs a known workload through the engine (fake peers, a manual
clock, so durations are exact) and reads the exposition back through
prometheus_client's own parser.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from coda.messages import (
    Failure,
    RunTask,
    RunWorkflow,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine
from coda.supervisor.jobs import Job
from coda.supervisor.metrics import MAX_QUEUES, OTHER, UNREGISTERED, Metrics
from coda.supervisor.peers import WorkerHandle
from coda.supervisor.stores import SqliteStore, commits
from coda.supervisor.stores.memory import MemoryStore
from coda.supervisor.stores.sqlite import rows
from tests.metric_samples import Samples, counted, parse, value
from tests.stores.committed import wait_committed
from tests.unit.engine_fakes import (
    ARGS,
    RESULT,
    FakePeer,
    again,
    lookup,
    make_engine,
    sent,
    worker,
)


def scrape(metrics: Metrics) -> Samples:
    """Every sample of the exposition, by name and labels."""
    return parse(metrics.exposition().decode())


def run_task(
    engine: Engine,
    clock: ManualClock,
    w: WorkerHandle,
    seconds: float,
    failure: Failure | None = None,
) -> None:
    """The worker starts the task it was sent, which ends ``seconds`` later."""
    (task,) = [m for m in sent(w) if isinstance(m, RunTask)]
    engine.started(w, Started(job_id=task.job_id))
    clock.advance(seconds)
    done = TaskDone(job_id=task.job_id, failure=failure)
    engine.task_done(w, done if failure is not None else TaskDone(task.job_id, result=RESULT))
    clock.settle()


def test_task_counts_and_durations_follow_a_known_workload(
    engine: Engine, clock: ManualClock
) -> None:
    metrics = Metrics(engine, lookup)
    client = FakePeer()
    for i in range(3):
        engine.submit(client, Submit(req_id=i, name="t", args=ARGS))
    engine.submit(client, Submit(req_id=9, name="t", args=ARGS, run_id="doomed"))
    clock.settle()
    assert engine.cancel_run("doomed") == "cancelled"  # queued: it never starts
    w = worker(engine, 1, tasks=1)
    clock.settle()

    run_task(engine, clock, w, 2.0)
    run_task(engine, clock, w, 0.5, Failure("ValueError", "no"))
    run_task(engine, clock, w, 0.25, Failure("ConnectionError", "again", retry_in=1.0))
    clock.advance(1.0)
    run_task(engine, clock, w, 3.0)

    samples = scrape(metrics)
    assert counted(samples, "tasks", "t") == {
        "started": 4,  # three tasks, one of them twice
        "succeeded": 2,
        "failed": 1,
        "retried": 1,
        "cancelled": 1,
        "requeued": 0,
        "cache_hits": 0,
    }
    # Three ended after running (their last attempts: 2 s, 0.5 s, 3 s); the
    # cancelled one never ran and is not observed.
    assert value(samples, "coda_task_duration_seconds_count", name="t") == 3
    assert value(samples, "coda_task_duration_seconds_sum", name="t") == 5.5
    buckets = {le: value(samples, "coda_task_duration_seconds_bucket", name="t", le=le) for le in (
        "0.25", "0.5", "2.5", "5.0", "+Inf"
    )}  # fmt: skip
    assert buckets == {"0.25": 0, "0.5": 1, "2.5": 2, "5.0": 3, "+Inf": 3}


def test_a_cancel_before_the_next_attempt_started_times_nothing(
    engine: Engine, clock: ManualClock
) -> None:
    metrics = Metrics(engine, lookup)
    w = worker(engine, 1, tasks=1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS, run_id="r"))
    clock.settle()
    run_task(engine, clock, w, 1.0, Failure("ConnectionError", "again", retry_in=5.0))
    clock.advance(5.0)
    (again_sent,) = [m for m in sent(w) if isinstance(m, RunTask)]  # held: not started yet
    assert engine.cancel_run("r") == "cancelling"  # the worker drops it
    clock.advance(30.0)
    engine.task_done(w, TaskDone(again_sent.job_id, failure=Failure("coda.Cancelled", "stop")))
    clock.settle()
    samples = scrape(metrics)
    assert counted(samples, "tasks", "t") == {
        "started": 1,
        "succeeded": 0,
        "failed": 0,
        "retried": 1,
        "cancelled": 1,
        "requeued": 0,
        "cache_hits": 0,
    }
    assert ("coda_task_duration_seconds_count", (("name", "t"),)) not in samples


def test_runs_and_cache_hits_are_counted_per_name(engine: Engine, clock: ManualClock) -> None:
    metrics = Metrics(engine, lookup)
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    clock.settle()
    (run,) = sent(w)
    assert isinstance(run, RunWorkflow)
    spawn = Spawn(req_id=1, run_id=run.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")
    engine.spawn(w, spawn)
    clock.settle()
    run_task(engine, clock, w, 1.0)
    engine.spawn(w, again(spawn, req_id=2))  # answered by the step's job
    clock.advance(0.5)
    hits = {"t": 2, "not.registered": 7}  # what the worker answered from the run's history
    engine.workflow_done(w, WorkflowDone(run.run_id, 1, result=RESULT, cache_hits=hits))
    clock.settle()

    samples = scrape(metrics)
    assert counted(samples, "tasks", "t")["cache_hits"] == 3
    assert counted(samples, "runs", "w") == {
        "started": 1,
        "succeeded": 1,
        "failed": 0,
        "retried": 0,
        "cancelled": 0,
        "requeued": 0,
        "cache_hits": 0,
    }
    assert value(samples, "coda_run_duration_seconds_sum", name="w") == 1.5
    assert value(samples, "coda_run_duration_seconds_count", name="w") == 1
    assert not [key for key in samples if ("name", "not.registered") in key[1]]
    assert ("coda_runs_started_total", (("name", "t"),)) not in samples  # t is a task


def test_queue_depths_and_live_jobs_are_read_at_scrape_time(
    engine: Engine, clock: ManualClock
) -> None:
    metrics = Metrics(engine, lookup, restarts=lambda: 3)
    client = FakePeer()
    for i in range(3):
        engine.submit(client, Submit(req_id=i, name="t", args=ARGS))
    engine.submit(client, Submit(req_id=5, name="other_q", args=ARGS))
    engine.submit(client, Submit(req_id=6, name="w", args=ARGS))
    clock.settle()
    samples = scrape(metrics)
    assert value(samples, "coda_queue_depth", queue="default", kind="task") == 3
    assert value(samples, "coda_queue_depth", queue="default", kind="workflow") == 1
    assert value(samples, "coda_queue_depth", queue="other", kind="task") == 1
    assert value(samples, "coda_jobs", kind="task", state="queued") == 4
    assert value(samples, "coda_workers") == 0
    assert value(samples, "coda_worker_restarts_total") == 3

    w = worker(engine, 1, tasks=1, workflows=0)
    clock.settle()
    (task,) = sent(w)
    assert isinstance(task, RunTask)
    engine.started(w, Started(job_id=task.job_id))
    engine.task_done(w, TaskDone(task.job_id, failure=Failure("E", "x", retry_in=60.0)))
    clock.settle()  # the retried task waits; the next one runs
    samples = scrape(metrics)
    assert value(samples, "coda_queue_depth", queue="default", kind="task") == 1
    live = {
        state: value(samples, "coda_jobs", kind="task", state=state)
        for state in ("queued", "delayed", "running")
    }
    assert live == {"queued": 2, "delayed": 1, "running": 1}  # other_q's has no worker
    assert value(samples, "coda_workers") == 1


def test_queues_past_the_cap_are_summed_under_other(engine: Engine, clock: ManualClock) -> None:
    metrics = Metrics(engine, lookup)
    client = FakePeer()
    for i in range(MAX_QUEUES + 5):
        engine.submit(client, Submit(req_id=i, name="t", args=ARGS, queue=f"q{i:04d}"))
    clock.settle()
    depths = {
        labels: count for (name, labels), count in scrape(metrics).items()
        if name == "coda_queue_depth" and ("kind", "task") in labels
    }  # fmt: skip
    assert len(depths) == MAX_QUEUES + 1
    assert depths[("kind", "task"), ("queue", OTHER)] == 5


def test_a_job_whose_name_is_no_longer_registered_is_labelled_unregistered(
    clock: ManualClock,
) -> None:
    store = MemoryStore()
    store.save_job(Job(id="old", kind="task", name="removed.task", args=ARGS, queue="default"))
    engine = make_engine(clock, store)
    metrics = Metrics(engine, lookup)
    assert engine.recover() == 1
    w = worker(engine, 1)
    clock.settle()
    run_task(engine, clock, w, 1.0, Failure("coda.UnknownName", "not registered here"))
    samples = scrape(metrics)
    assert counted(samples, "tasks", UNREGISTERED)["failed"] == 1
    assert value(samples, "coda_task_duration_seconds_count", name=UNREGISTERED) == 1
    assert not [key for key in samples if ("name", "removed.task") in key[1]]


def test_each_supervisor_has_its_own_registry(clock: ManualClock) -> None:
    busy, idle = make_engine(clock), make_engine(clock)
    busy_metrics, idle_metrics = Metrics(busy, lookup), Metrics(idle, lookup)
    w = worker(busy, 1)
    busy.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS))
    clock.settle()
    run_task(busy, clock, w, 1.0)
    assert counted(scrape(busy_metrics), "tasks", "t")["succeeded"] == 1
    assert ("coda_tasks_succeeded_total", (("name", "t"),)) not in scrape(idle_metrics)


def test_store_commits_are_timed_and_failures_counted(
    tmp_path: Path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(str(tmp_path / "state.sqlite3"), clock=clock)
    try:
        engine = make_engine(clock, store)
        metrics = Metrics(engine, lookup)
        real_write = rows.Rows.write
        failures = [sqlite3.OperationalError("disk I/O error")]

        def flaky_write(batch: rows.Rows, db: sqlite3.Connection) -> tuple[int, int]:
            if failures:
                raise failures.pop()
            return real_write(batch, db)

        monkeypatch.setattr(rows.Rows, "write", flaky_write)
        engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS))
        clock.settle()  # the first commit fails
        clock.advance(commits.RETRY_AFTER)  # the retry succeeds
        for i in range(3):
            engine.submit(FakePeer(), Submit(req_id=2 + i, name="t", args=ARGS))
            wait_committed(store, clock)
        samples = scrape(metrics)
        assert store.commits == 4 and store.failed_commits == 1
        assert value(samples, "coda_store_commit_seconds_count") == 4
        assert value(samples, "coda_store_commit_failures_total") == 1
        assert 0 < value(samples, "coda_store_commit_seconds_sum") < 60
    finally:
        store.close()
