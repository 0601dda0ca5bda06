"""Cancelling runs in the engine, with fake peers and a hand-driven clock."""

from __future__ import annotations

from coda.messages import (
    CancelReply,
    CancelRun,
    Error,
    Failure,
    Finished,
    RunWorkflow,
    Spawn,
    Started,
    StopJob,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine
from coda.supervisor.jobs import JobState
from tests.unit.engine_fakes import ARGS, RESULT, FakePeer, make_engine, runs, sent, worker


def finished(peer: FakePeer) -> list[Finished]:
    return [m for m in peer.take() if isinstance(m, Finished)]


def test_a_queued_task_is_cancelled_at_once_and_never_runs(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS, run_id="r", wait=True))
    clock.settle()
    engine.cancel(client, CancelRun(req_id=2, run_id="r"))
    clock.settle()
    messages = client.take()
    assert CancelReply(req_id=2, run_id="r", state="cancelled") in messages
    (ended,) = [m for m in messages if isinstance(m, Finished)]
    assert ended.failure is not None and ended.failure.type_name == "coda.Cancelled"
    w = worker(engine, 1)
    clock.advance(60)
    assert runs(w) == []
    assert engine.counts["t"]["cancelled"] == 1


def test_a_delayed_retry_is_cancelled_before_it_runs_again(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS, run_id="r"))
    clock.settle()
    assert len(runs(w)) == 1
    engine.task_done(w, TaskDone(job_id="r", failure=Failure("E", "x", retry_in=10)))
    engine.cancel(FakePeer(), CancelRun(req_id=2, run_id="r"))
    clock.advance(60)
    assert runs(w) == []


def test_cancelling_a_workflow_stops_it_and_everything_it_spawned(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    w = worker(engine, 1, tasks=2)
    engine.submit(client, Submit(req_id=1, name="w", args=ARGS, run_id="run", wait=True))
    clock.settle()
    sent(w)
    for req_id, name in ((1, "t"), (2, "at"), (3, "t")):  # sync, async, and one left queued
        engine.spawn(w, Spawn(req_id=req_id, run_id="run", kind="task", name=name, args=ARGS))
    clock.settle()
    sync_task, async_task = runs(w)
    for task in (sync_task, async_task):
        engine.started(w, Started(job_id=task.job_id))
    engine.cancel(client, CancelRun(req_id=9, run_id="run"))
    clock.settle()
    stops = [m.job_id for m in sent(w) if isinstance(m, StopJob)]
    assert sorted(stops) == sorted([async_task.job_id, "run"])  # not the sync one: it finishes
    assert CancelReply(req_id=9, run_id="run", state="cancelling") in client.take()
    queued = [j for j in engine._live.values() if j.name == "t" and j.worker is None]
    assert queued == []  # the third spawn was dropped before it ever started
    # the worker answers: the async task and the workflow stopped, the sync task finished
    engine.task_done(w, TaskDone(job_id=async_task.job_id, failure=Failure("x", "cancelled")))
    engine.task_done(w, TaskDone(job_id=sync_task.job_id, result=RESULT))
    retry = Failure("asyncio.CancelledError", "", retry_in=0.0)  # even asking for a rerun
    engine.workflow_done(w, WorkflowDone(run_id="run", attempt=1, failure=retry))
    clock.advance(60)
    (ended,) = finished(client)
    assert ended.failure is not None and ended.failure.type_name == "coda.Cancelled"
    assert engine._live == {}
    assert [m for m in sent(w) if isinstance(m, RunWorkflow)] == []  # never rerun
    assert engine.counts["t"]["cancelled"] == 2 and engine.counts["at"]["cancelled"] == 1


def test_terminate_replaces_the_worker_of_a_running_sync_task(clock: ManualClock) -> None:
    replaced: list[int] = []
    engine = make_engine(clock, on_hung_worker=replaced.append)
    client = FakePeer()
    w = worker(engine, 1, tasks=2)
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS, run_id="doomed", wait=True))
    engine.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS, run_id="bystander"))
    clock.settle()
    for task in runs(w):
        engine.started(w, Started(job_id=task.job_id))
    engine.cancel(client, CancelRun(req_id=3, run_id="doomed", terminate=True))
    clock.settle()
    assert replaced == [1]
    assert CancelReply(req_id=3, run_id="doomed", state="cancelled") in client.sent
    engine.worker_left(1)  # the pool killed it: the bystander is requeued, not blamed
    assert engine._live["bystander"].blamed == 0
    assert engine._live["bystander"].state is JobState.QUEUED


def test_a_cancelling_run_whose_worker_dies_ends_cancelled(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    w = worker(engine, 1)
    engine.submit(client, Submit(req_id=1, name="w", args=ARGS, run_id="run", wait=True))
    clock.settle()
    engine.cancel(FakePeer(), CancelRun(req_id=2, run_id="run"))
    engine.worker_left(w.id)
    clock.settle()
    (ended,) = finished(client)
    assert ended.failure is not None and ended.failure.type_name == "coda.Cancelled"
    w2 = worker(engine, 2)
    clock.settle()
    assert sent(w2) == []


def test_cancel_refuses_unknown_and_finished_runs_and_changes_nothing(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    w = worker(engine, 1)
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS, run_id="done"))
    clock.settle()
    engine.task_done(w, TaskDone(job_id="done", result=RESULT))
    clock.settle()
    client.take()
    engine.cancel(client, CancelRun(req_id=2, run_id="done"))
    engine.cancel(client, CancelRun(req_id=3, run_id="nobody"))
    refusals = [m for m in client.take() if isinstance(m, Error)]
    assert [(e.code, e.req_id) for e in refusals] == [("already_finished", 2), ("not_found", 3)]
    assert "succeeded; nothing was changed" in refusals[0].message
    job = engine.store.get_job("done")
    assert job is not None and job.state is JobState.SUCCEEDED and job.result == RESULT


def test_queue_depths_leave_out_cancelled_and_purged_jobs(
    engine: Engine, clock: ManualClock
) -> None:
    """Nobody consumes "other": its cancelled jobs are never popped from the
    queue, and must not be counted as waiting there."""
    for i in range(4):
        engine.submit(FakePeer(), Submit(req_id=i, name="other_q", args=ARGS, run_id=f"r{i}"))
    clock.settle()
    assert engine.status()["queues"] == {"other": {"tasks": 4}}
    engine.cancel(FakePeer(), CancelRun(req_id=9, run_id="r0"))
    assert engine.status()["queues"] == {"other": {"tasks": 3}}
    assert engine.queries.purge_queue("other") == 3
    assert engine.status()["queues"] == {"other": {"tasks": 0}}
    w = worker(engine, 1, queues=("other",))
    engine.submit(FakePeer(), Submit(req_id=10, name="other_q", args=ARGS, run_id="r10"))
    clock.settle()
    assert [run.job_id for run in runs(w)] == ["r10"]
    assert engine.status()["queues"] == {"other": {"tasks": 0}}
