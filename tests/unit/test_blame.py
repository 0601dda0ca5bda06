"""Who is to blame when a worker dies: a poison job fails, its bystanders do not."""

from __future__ import annotations

from coda.messages import (
    Finished,
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
from tests.unit.engine_fakes import ARGS, RESULT, FakePeer, make_engine, runs, sent, worker

MAX_LOSSES = 5  # the engine's default max_worker_losses


def workflows_sent(handle: object) -> list[RunWorkflow]:
    return [m for m in sent(handle) if isinstance(m, RunWorkflow)]  # type: ignore[arg-type]


def test_workflows_are_not_blamed_for_a_task_that_kills_its_worker(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="w", args=ARGS, wait=True))
    first_worker = None
    for worker_id in range(1, 2 * MAX_LOSSES):
        w = worker(engine, worker_id)
        clock.settle()
        messages = sent(w)
        (run,) = [m for m in messages if isinstance(m, RunWorkflow)]
        if worker_id == 1:
            first_worker = w
            engine.spawn(w, Spawn(req_id=1, run_id=run.run_id, kind="task", name="t", args=ARGS))
            clock.settle()
            messages = sent(w)
        for task in [m for m in messages if isinstance(m, RunTask)]:  # the poison starts...
            engine.started(w, Started(job_id=task.job_id))  # ...and its worker dies
        engine.worker_left(worker_id)
        clock.settle()
        if not any(job.kind == "task" for job in engine._live.values()):
            break
    assert first_worker is not None  # its spawn's waiter hears how the task ended
    (answer,) = [m for m in sent(first_worker) if isinstance(m, Finished)]
    assert worker_id == MAX_LOSSES + 1
    assert answer.failure is not None and answer.failure.type_name == "coda.WorkerLost"
    (run_job,) = [j for j in engine._live.values() if j.kind == "workflow"]
    assert (run_job.blamed, run_job.losses) == (0, MAX_LOSSES + 1)  # there, never blamed
    assert [m for m in client.take() if isinstance(m, Finished)] == []  # the run goes on


def test_workflows_suspected_together_run_alone_and_only_the_poison_fails(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    for i in range(3):
        engine.submit(client, Submit(req_id=i, name="w", args=ARGS, wait=True, run_id=f"w{i}"))
    for worker_id in range(1, MAX_LOSSES + 2):  # all three die together, six times
        w = worker(engine, worker_id)
        clock.settle()
        assert len(workflows_sent(w)) == 3
        engine.worker_left(worker_id)
    assert all(engine._live[f"w{i}"].isolated for i in range(3))
    # from now on each runs alone: one at a time per worker, whatever its slots
    worker_id = 100
    w = worker(engine, worker_id, workflows=10)
    clock.settle()
    for innocent in ("w0", "w1"):  # the worker takes the next one once it is done with one
        (alone,) = workflows_sent(w)
        assert alone.run_id == innocent
        engine.workflow_done(w, WorkflowDone(alone.run_id, alone.attempt, result=RESULT))
        clock.settle()
    engine.worker_left(worker_id)  # it dies running w2, alone
    deaths = 1
    while "w2" in engine._live:  # the poison kills every worker it runs on, alone
        worker_id += 1
        w = worker(engine, worker_id)
        clock.settle()
        (alone,) = workflows_sent(w)
        assert alone.run_id == "w2"
        engine.worker_left(worker_id)
        deaths += 1
    clock.settle()
    assert deaths == MAX_LOSSES + 1
    outcomes = {m.run_id: m.failure for m in client.take() if isinstance(m, Finished)}
    assert outcomes["w0"] is None and outcomes["w1"] is None
    assert outcomes["w2"] is not None and outcomes["w2"].type_name == "coda.WorkerLost"


def test_a_worker_killed_for_a_timeout_blames_no_other_task(clock: ManualClock) -> None:
    killed: list[int] = []
    engine = make_engine(clock, on_hung_worker=killed.append, timeout_grace=0.0)
    w = worker(engine, 1, tasks=2)
    engine.submit(FakePeer(), Submit(req_id=1, name="slow", args=ARGS, run_id="slow"))
    engine.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS, run_id="other"))
    clock.settle()
    for task in runs(w):
        engine.started(w, Started(job_id=task.job_id))
    clock.advance(5.0)  # "slow" times out: the engine has its worker killed
    assert killed == [1]
    engine.worker_left(1)
    other = engine._live["other"]
    assert (other.losses, other.blamed) == (1, 0)  # it was interrupted, not to blame
    w2 = worker(engine, 2)
    clock.settle()
    (again,) = runs(w2)
    assert again.job_id == "other" and again.redelivered is True
    engine.task_done(w2, TaskDone(job_id="other", result=RESULT))
