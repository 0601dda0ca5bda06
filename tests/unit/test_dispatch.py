"""Prefetch, timeouts and rerun history, with fake peers and a hand-driven
clock (see engine_fakes.py)."""

from __future__ import annotations

import msgspec
import pytest

from coda.messages import (
    CachedStep,
    Failure,
    Finished,
    RunWorkflow,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.supervisor import steps as steps_module
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine, WorkerHandle
from tests.unit.engine_fakes import ARGS, RESULT, FakePeer, make_engine, runs, sent, worker


def test_prefetch_sends_that_many_tasks_beyond_the_free_slots(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1, tasks=2, prefetch=3)
    for i in range(10):
        engine.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
    clock.settle()
    first = runs(w)
    assert len(first) == 5
    assert engine.status()["workers"][0]["held"] == 5  # type: ignore[index]  # none started yet
    for run_task in first[:2]:
        engine.started(w, Started(job_id=run_task.job_id))
    status = engine.status()["workers"][0]  # type: ignore[index]
    assert (status["tasks"], status["held"]) == ("2/2", 3)
    # a slot frees up: the worker starts the oldest held task and reports both
    engine.started(w, Started(job_id=first[2].job_id))
    engine.task_done(w, TaskDone(job_id=first[0].job_id, result=RESULT))
    clock.settle()
    assert len(runs(w)) == 1  # one more, held
    assert engine.status()["workers"][0]["held"] == 3  # type: ignore[index]


def test_workflows_are_never_prefetched_and_zero_prefetch_sends_only_to_free_slots(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1, tasks=1, workflows=2, prefetch=0)
    for i in range(3):
        engine.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
        engine.submit(FakePeer(), Submit(req_id=10 + i, name="w", args=ARGS))
    clock.settle()
    messages = sent(w)
    assert sum(1 for m in messages if isinstance(m, RunWorkflow)) == 2  # its slots, no more
    assert len([m for m in messages if not isinstance(m, RunWorkflow)]) == 1
    prefetching = worker(engine, 2, tasks=1, workflows=1, prefetch=5)
    clock.settle()
    assert sum(1 for m in sent(prefetching) if isinstance(m, RunWorkflow)) == 1


def test_a_task_times_out_counted_from_when_the_worker_starts_it(clock: ManualClock) -> None:
    hung: list[int] = []
    engine = make_engine(clock, on_hung_worker=hung.append, timeout_grace=1.0)
    w = worker(engine, 1, tasks=1, prefetch=1)
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="slow", args=ARGS, wait=True))  # timeout 5 s
    engine.submit(client, Submit(req_id=2, name="slow", args=ARGS, wait=True))
    clock.settle()
    running, held = runs(w)
    clock.advance(100)  # neither has started: no clock runs yet
    assert hung == []
    engine.started(w, Started(job_id=running.job_id))
    clock.advance(5.9)  # the timeout plus the grace is 6 s
    assert hung == []
    clock.advance(0.1)
    assert hung == [1]
    (timed_out,) = [m for m in client.take() if isinstance(m, Finished)]
    assert timed_out.run_id == running.job_id
    assert timed_out.failure is not None and timed_out.failure.type_name == "coda.TaskTimeout"
    engine.started(w, Started(job_id=held.job_id))
    engine.task_done(w, TaskDone(job_id=held.job_id, result=RESULT))
    clock.advance(60)  # a finished task leaves no timer behind
    assert hung == [1]
    assert clock.pending_timers == 0


def test_a_dead_workers_unstarted_tasks_are_not_counted_as_lost(
    engine: Engine, clock: ManualClock
) -> None:
    w1 = worker(engine, 1, tasks=1, prefetch=2)
    for i in range(3):
        engine.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
    clock.settle()
    started, held_a, held_b = runs(w1)
    engine.started(w1, Started(job_id=started.job_id))
    engine.worker_left(1)
    w2 = worker(engine, 2, tasks=3, prefetch=0)
    clock.settle()
    retaken = {m.job_id: m for m in runs(w2)}
    assert list(retaken) == [started.job_id, held_a.job_id, held_b.job_id]  # order kept
    assert retaken[started.job_id].redelivered
    assert not retaken[held_a.job_id].redelivered and not retaken[held_b.job_id].redelivered


def _key(*parts: object) -> bytes:
    return msgspec.msgpack.encode(list(parts))


def _workflow_with_steps(engine: Engine, clock: ManualClock, w: WorkerHandle) -> RunWorkflow:
    """Attempt 1 of workflow ``w``: step 1 succeeds, step 2 fails, step 3 still
    runs; then the attempt fails with a retry. Returns attempt 2's RunWorkflow."""
    engine.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    clock.settle()
    (wf,) = sent(w)
    assert isinstance(wf, RunWorkflow) and wf.history == []
    for req_id, key in enumerate((_key(1), _key(2), _key(3))):
        engine.spawn(w, Spawn(req_id, wf.run_id, "task", "t", ARGS, cache_key=key))
    clock.settle()
    ok, bad, _running = runs(w)
    engine.task_done(w, TaskDone(job_id=ok.job_id, result=RESULT))
    engine.task_done(w, TaskDone(job_id=bad.job_id, failure=Failure("E", "no")))
    engine.workflow_done(w, WorkflowDone(wf.run_id, 1, failure=Failure("E", "again", retry_in=0)))
    clock.advance(0)
    (rerun,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
    return rerun


def test_a_rerun_gets_the_results_of_its_succeeded_steps(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1, tasks=5)
    rerun = _workflow_with_steps(engine, clock, w)
    assert rerun.attempt == 2
    assert rerun.history == [CachedStep("task", "t", _key(1), RESULT)]  # not 2, not 3
    engine.workflow_done(w, WorkflowDone(rerun.run_id, 2, result=RESULT, cache_hits={"t": 1}))
    assert engine.counts["t"]["cache_hits"] == 1  # hits answered by the worker are counted


def test_history_is_bounded(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(steps_module, "HISTORY_BUDGET", len(ARGS.body) + 2)
    w = worker(engine, 1, tasks=5)
    rerun = _workflow_with_steps(engine, clock, w)
    assert rerun.history == []  # over budget: the supervisor answers those spawns
    engine.spawn(w, Spawn(9, rerun.run_id, "task", "t", ARGS, cache_key=_key(1)))
    (answer,) = sent(w)
    assert isinstance(answer, Finished) and answer.req_id == 9 and answer.result == RESULT


def test_a_fresh_runs_step_lookups_do_not_read_the_store(
    engine: Engine,
    clock: ManualClock,
    mocker,  # type: ignore[no-untyped-def]
) -> None:
    w = worker(engine, 1, tasks=5)
    reads = mocker.spy(engine.store, "get_cached")
    engine.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    clock.settle()
    (wf,) = sent(w)
    assert isinstance(wf, RunWorkflow)
    engine.spawn(w, Spawn(1, wf.run_id, "task", "t", ARGS, cache_key=_key(1)))  # a miss
    engine.spawn(w, Spawn(2, wf.run_id, "task", "t", ARGS, cache_key=_key(1)))  # attaches
    clock.settle()
    (only,) = runs(w)
    engine.task_done(w, TaskDone(job_id=only.job_id, result=RESULT))
    engine.spawn(w, Spawn(3, wf.run_id, "task", "t", ARGS, cache_key=_key(1)))  # a hit
    clock.settle()
    answers = [m.req_id for m in sent(w) if isinstance(m, Finished)]
    assert sorted(answers) == [1, 2, 3]
    assert reads.call_count == 0
