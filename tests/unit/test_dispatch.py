"""Prefetch and rerun history, with fake peers (see test_scheduler.py)."""

from __future__ import annotations

import msgspec
import pytest

from coda.messages import (
    CachedStep,
    Failure,
    Finished,
    RunTask,
    RunWorkflow,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.supervisor import scheduler as scheduler_module
from coda.supervisor.scheduler import Scheduler, WorkerHandle
from tests.unit.test_scheduler import ARGS, RESULT, FakePeer, run, sent, turn, until_sent


def worker(s: Scheduler, worker_id: int, slots: int = 1, prefetch: int = 1) -> WorkerHandle:
    handle = WorkerHandle(worker_id, FakePeer(), 100 + worker_id, ("default",), slots, 10, prefetch)
    s.worker_joined(handle)
    return handle


def runs(handle: WorkerHandle) -> list[RunTask]:
    return [m for m in sent(handle) if isinstance(m, RunTask)]


def test_prefetch_sends_that_many_tasks_beyond_the_free_slots() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, slots=2, prefetch=3)
        for i in range(10):
            s.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
        await turn()
        first = runs(w)
        assert len(first) == 5
        assert s.status()["workers"][0]["held"] == 5  # none reported started yet
        for run_task in first[:2]:
            s.started(w, Started(job_id=run_task.job_id))
        assert s.status()["workers"][0]["tasks"] == "2/2"
        assert s.status()["workers"][0]["held"] == 3
        # a slot frees up: the worker starts the oldest held task and reports both
        s.started(w, Started(job_id=first[2].job_id))
        s.task_done(w, TaskDone(job_id=first[0].job_id, result=RESULT))
        await turn()
        assert len(runs(w)) == 1  # one more, held
        assert s.status()["workers"][0]["held"] == 3

    run(check)


def test_a_held_task_times_out_from_when_it_starts() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, slots=1, prefetch=1)
        s.submit(FakePeer(), Submit(req_id=1, name="slow", args=ARGS))
        s.submit(FakePeer(), Submit(req_id=2, name="slow", args=ARGS))
        await turn()
        running, held = runs(w)
        timers = s.dispatch._timers
        assert timers == {}  # a task's clock starts when the worker starts it
        s.started(w, Started(job_id=running.job_id))
        assert set(timers) == {running.job_id}
        s.started(w, Started(job_id=held.job_id))
        s.task_done(w, TaskDone(job_id=running.job_id, result=RESULT))
        assert set(timers) == {held.job_id}
        s.task_done(w, TaskDone(job_id=held.job_id, result=RESULT))
        assert timers == {}  # a finished task leaves no timer behind

    run(check)


def test_a_dead_workers_unstarted_tasks_are_not_counted_as_lost() -> None:
    async def check(s: Scheduler) -> None:
        w1 = worker(s, 1, slots=1, prefetch=2)
        for i in range(3):
            s.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
        await turn()
        started, held_a, held_b = runs(w1)
        s.started(w1, Started(job_id=started.job_id))
        s.worker_left(1)
        w2 = worker(s, 2, slots=3, prefetch=0)
        await turn()
        again = {m.job_id: m for m in runs(w2)}
        assert list(again) == [started.job_id, held_a.job_id, held_b.job_id]  # order kept
        assert again[started.job_id].redelivered
        assert not again[held_a.job_id].redelivered and not again[held_b.job_id].redelivered

    run(check)


def test_no_prefetch_for_workflows_and_none_when_zero() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, slots=1, prefetch=0)
        for i in range(3):
            s.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
        await turn()
        assert len(runs(w)) == 1

    run(check)


def _key(*parts: object) -> bytes:
    return msgspec.msgpack.encode(list(parts))


async def _workflow_with_cached_steps(s: Scheduler, w: WorkerHandle) -> RunWorkflow:
    """Attempt 1 of workflow ``w``: step k1 succeeds, k2 fails, k3 still runs; then
    the attempt fails with a retry. Returns the RunWorkflow of attempt 2."""
    s.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    await turn()
    (wf,) = sent(w)
    assert isinstance(wf, RunWorkflow) and wf.history == []
    for req_id, key in enumerate((_key(1), _key(2), _key(3))):
        s.spawn(w, Spawn(req_id, wf.run_id, "task", "t", ARGS, cache_key=key))
    await turn()
    ok, bad, _running = runs(w)
    s.task_done(w, TaskDone(job_id=ok.job_id, result=RESULT))
    s.task_done(w, TaskDone(job_id=bad.job_id, failure=Failure("E", "no")))
    retry = Failure("E", "again", retry_in=0.0)
    s.workflow_done(w, WorkflowDone(wf.run_id, 1, failure=retry))
    await until_sent(w.peer, RunWorkflow)  # type: ignore[arg-type]
    (rerun,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
    return rerun


def test_a_rerun_gets_the_results_of_its_succeeded_cached_steps() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, slots=5, prefetch=0)
        rerun = await _workflow_with_cached_steps(s, w)
        assert rerun.attempt == 2
        assert rerun.history == [CachedStep("task", "t", _key(1), RESULT)]  # not k2, not k3
        s.workflow_done(w, WorkflowDone(rerun.run_id, 2, result=RESULT, cache_hits={"t": 1}))
        assert s.counts["t"]["cache_hits"] == 1  # hits answered by the worker are counted

    run(check)


def test_history_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(scheduler_module, "HISTORY_BUDGET", len(ARGS.body) + 2)

    async def check(s: Scheduler) -> None:
        w = worker(s, 1, slots=5, prefetch=0)
        rerun = await _workflow_with_cached_steps(s, w)
        assert rerun.history == []  # over budget: the supervisor answers those spawns
        s.spawn(w, Spawn(9, rerun.run_id, "task", "t", ARGS, cache_key=_key(1)))
        (answer,) = sent(w)
        assert isinstance(answer, Finished) and answer.req_id == 9 and answer.result == RESULT

    run(check)


def test_a_fresh_runs_cache_lookups_do_not_read_the_store(mocker) -> None:  # type: ignore[no-untyped-def]
    async def check(s: Scheduler) -> None:
        w = worker(s, 1, slots=5, prefetch=0)
        reads = mocker.spy(s.store, "get_cached")
        s.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
        await turn()
        (wf,) = sent(w)
        s.spawn(w, Spawn(1, wf.run_id, "task", "t", ARGS, cache_key=_key(1)))  # a miss
        s.spawn(w, Spawn(2, wf.run_id, "task", "t", ARGS, cache_key=_key(1)))  # attaches
        await turn()
        (only,) = runs(w)
        s.task_done(w, TaskDone(job_id=only.job_id, result=RESULT))
        s.spawn(w, Spawn(3, wf.run_id, "task", "t", ARGS, cache_key=_key(1)))  # a hit
        answers = [m.req_id for m in sent(w) if isinstance(m, Finished)]
        assert sorted(answers) == [1, 2, 3]
        assert reads.call_count == 0

    run(check)
