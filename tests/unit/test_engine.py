"""The engine with fake peers and a hand-driven clock: slots, leases, steps,
retries, requeues, holds. No sockets, no event loop, no real timers."""

from __future__ import annotations

import msgspec

from coda.messages import (
    Accepted,
    Error,
    Failure,
    Finished,
    Payload,
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
from tests.unit.engine_fakes import ARGS, RESULT, FakePeer, again, runs, sent, worker

NEXT = Payload("application/x-msgpack", "binary", b"\x81\xa1n\x01")


def key(*parts: object) -> bytes:
    return msgspec.msgpack.encode(list(parts))


def start_workflow(engine: Engine, clock: ManualClock, w: object) -> RunWorkflow:
    engine.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
    clock.settle()
    (run,) = sent(w)  # type: ignore[arg-type]
    assert isinstance(run, RunWorkflow)
    return run


def test_tasks_go_only_to_free_slots_without_prefetch(engine: Engine, clock: ManualClock) -> None:
    client = FakePeer()
    w = worker(engine, 1, tasks=2)
    for i in range(5):
        engine.submit(client, Submit(req_id=i, name="t", args=ARGS))
    clock.settle()
    first = runs(w)
    assert len(first) == 2
    engine.task_done(w, TaskDone(job_id=first[0].job_id, result=RESULT))
    clock.settle()
    assert len(runs(w)) == 1
    assert [type(m) for m in client.take()] == [Accepted] * 5


def test_workflow_slots_are_separate_from_task_slots(engine: Engine, clock: ManualClock) -> None:
    client = FakePeer()
    w = worker(engine, 1, tasks=1, workflows=1)
    engine.submit(client, Submit(req_id=1, name="w", args=ARGS, wait=True))
    clock.settle()
    (run_wf,) = sent(w)
    assert isinstance(run_wf, RunWorkflow)
    engine.spawn(w, Spawn(req_id=7, run_id=run_wf.run_id, kind="task", name="t", args=ARGS))
    clock.settle()
    (run_task,) = runs(w)
    assert run_task.run_id == run_wf.run_id
    engine.task_done(w, TaskDone(job_id=run_task.job_id, result=RESULT))
    clock.settle()
    assert sent(w) == [Finished(req_id=7, run_id=run_task.job_id, kind="task", result=RESULT)]
    engine.workflow_done(w, WorkflowDone(run_id=run_wf.run_id, attempt=1, result=RESULT))
    clock.settle()
    assert client.take()[-1] == Finished(1, run_wf.run_id, "workflow", RESULT)


def test_a_step_attaches_while_it_runs_and_answers_once_it_succeeded(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1)
    wf = start_workflow(engine, clock, w)
    spawn = Spawn(req_id=1, run_id=wf.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")
    engine.spawn(w, spawn)
    engine.spawn(w, again(spawn, 2))  # same step while it runs: attach
    clock.settle()
    (only,) = runs(w)
    engine.task_done(w, TaskDone(job_id=only.job_id, result=RESULT))
    clock.settle()
    assert sorted(m.req_id for m in sent(w) if isinstance(m, Finished)) == [1, 2]
    engine.spawn(w, again(spawn, 3))  # succeeded: answered at once
    assert sent(w) == [Finished(3, only.job_id, "task", RESULT)]
    assert engine.counts["t"]["cache_hits"] == 2


def test_a_failed_step_answers_its_failure_to_a_rerun_of_the_same_attempt(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1)
    wf = start_workflow(engine, clock, w)
    spawn = Spawn(req_id=1, run_id=wf.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")
    engine.spawn(w, spawn)
    clock.settle()
    (first,) = runs(w)
    engine.started(w, Started(job_id=first.job_id))
    engine.worker_left(w.id)  # the worker dies: the step, to blame, fails for good...
    for _ in range(5):  # ...after MAX losses alone (it kills every worker it runs on)
        w = worker(engine, w.id + 1)
        clock.settle()
        task = next(m for m in sent(w) if isinstance(m, RunTask))
        engine.started(w, Started(job_id=task.job_id))
        engine.worker_left(w.id)
    w = worker(engine, 99)
    clock.settle()
    (rerun,) = sent(w)  # the run, interrupted each time, is rerun: same attempt
    assert isinstance(rerun, RunWorkflow) and rerun.attempt == 1
    engine.spawn(w, again(spawn, 2))
    clock.settle()
    (answer,) = sent(w)  # the step's failure, not a new execution of the poison
    assert isinstance(answer, Finished) and answer.failure is not None
    assert answer.failure.type_name == "coda.WorkerLost"


def test_a_failed_step_runs_again_in_the_next_attempt(engine: Engine, clock: ManualClock) -> None:
    w = worker(engine, 1)
    wf = start_workflow(engine, clock, w)
    spawn = Spawn(req_id=1, run_id=wf.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")
    engine.spawn(w, spawn)
    clock.settle()
    (first,) = runs(w)
    engine.task_done(w, TaskDone(job_id=first.job_id, failure=Failure("E", "boom")))
    retry = Failure("E", "the workflow failed", retry_in=0.0)
    engine.workflow_done(w, WorkflowDone(run_id=wf.run_id, attempt=1, failure=retry))
    clock.advance(0)
    (rerun,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
    assert rerun.attempt == 2
    engine.spawn(w, again(spawn, 2))
    clock.settle()
    (second,) = runs(w)
    assert second.job_id != first.job_id
    assert "cache_hits" not in engine.counts["t"]


def test_a_retry_waits_its_delay_then_runs_the_next_attempt(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS))
    clock.settle()
    (first,) = runs(w)
    engine.task_done(w, TaskDone(job_id=first.job_id, failure=Failure("E", "x", retry_in=5.0)))
    clock.advance(4.9)
    assert sent(w) == [] and engine.status()["delayed"] == 1
    clock.advance(0.1)
    (second,) = sent(w)
    assert isinstance(second, RunTask) and second.attempt == 2
    assert engine.counts["t"]["retried"] == 1
    assert engine.status()["delayed"] == 0


def test_a_rate_limited_name_starts_once_per_interval_while_others_flow(
    engine: Engine, clock: ManualClock
) -> None:
    """``min_interval`` 10 s: three at once start at 0, 10 and 20 s, each
    held by the supervisor meanwhile; an unlimited task is not held up."""
    w = worker(engine, 1, tasks=8)
    for i in range(3):
        engine.submit(FakePeer(), Submit(req_id=i, name="limited", args=ARGS, run_id=f"l{i}"))
    engine.submit(FakePeer(), Submit(req_id=9, name="t", args=ARGS, run_id="free"))
    clock.settle()
    assert [run.job_id for run in runs(w)] == ["l0", "free"]
    assert engine.status()["delayed"] == 2
    clock.advance(5.0)
    assert sent(w) == []
    clock.advance(5.0)
    assert [run.job_id for run in runs(w)] == ["l1"]
    clock.advance(10.0)
    assert [run.job_id for run in runs(w)] == ["l2"]
    assert "retried" not in engine.counts.get("limited", {})  # not a retry
    engine.submit(FakePeer(), Submit(req_id=5, name="limited", args=ARGS, run_id="l3"))
    clock.settle()
    assert sent(w) == []  # the next free start is 30 s
    clock.advance(10.0)
    assert [run.job_id for run in runs(w)] == ["l3"]


def test_retry_args_replace_the_next_attempts_arguments(engine: Engine, clock: ManualClock) -> None:
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS, run_id="job-1"))
    clock.settle()
    (first,) = runs(w)
    retry = Failure("ConnectionError", "again", retry_in=0.0)
    engine.task_done(w, TaskDone(job_id="job-1", failure=retry, retry_args=NEXT))
    clock.advance(0)
    (second,) = runs(w)
    assert (first.args, second.args, second.attempt) == (ARGS, NEXT, 2)
    assert second.redelivered is False


def test_not_before_holds_a_submission_back_until_then(engine: Engine, clock: ManualClock) -> None:
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS, not_before=clock.now + 30))
    clock.advance(29.9)
    assert runs(w) == [] and engine.status()["delayed"] == 1
    clock.advance(0.1)
    assert len(runs(w)) == 1


def test_a_dead_workers_jobs_go_back_to_the_head_of_the_queue(
    engine: Engine, clock: ManualClock
) -> None:
    w1 = worker(engine, 1)
    for i in range(3):
        engine.submit(FakePeer(), Submit(req_id=i, name="t", args=ARGS))
    clock.settle()
    (held,) = runs(w1)
    engine.started(w1, Started(job_id=held.job_id))
    engine.worker_left(1)
    w2 = worker(engine, 2)
    clock.settle()
    (retaken,) = runs(w2)
    assert retaken.job_id == held.job_id  # head of the queue, not behind the others
    assert retaken.redelivered is True  # it had started on the dead worker
    engine.task_done(w1, TaskDone(job_id=held.job_id, result=RESULT))  # late: ignored
    assert engine.status()["jobs_in_flight"] == 3


def test_a_poison_task_fails_after_repeated_worker_deaths(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS, wait=True))
    for worker_id in range(1, 8):
        w = worker(engine, worker_id)
        clock.settle()
        for message in runs(w):  # it starts the job, which kills it
            engine.started(w, Started(job_id=message.job_id))
        engine.worker_left(worker_id)
    clock.settle()
    finished = [m for m in client.take() if isinstance(m, Finished)]
    assert len(finished) == 1 and finished[0].failure is not None
    assert finished[0].failure.type_name == "coda.WorkerLost"


def test_refusals_name_what_is_wrong(engine: Engine, clock: ManualClock) -> None:
    client = FakePeer()
    engine.submit(client, Submit(req_id=1, name="missing", args=ARGS))
    pickled = Payload("application/x-python-serialize", "binary", b"")
    engine.submit(client, Submit(req_id=2, name="t", args=pickled))
    w = worker(engine, 1)
    engine.spawn(w, Spawn(req_id=3, run_id="nope", kind="task", name="t", args=ARGS))
    errors = client.take()
    assert [(e.code, e.req_id) for e in errors if isinstance(e, Error)] == [
        ("unknown_name", 1),
        ("content_disallowed", 2),
    ]
    (stale,) = sent(w)
    assert isinstance(stale, Error) and stale.code == "stale_run"


def test_dedicated_queues_go_to_their_workers_only(engine: Engine, clock: ManualClock) -> None:
    default = worker(engine, 1)
    other = worker(engine, 2, queues=("other",))
    engine.submit(FakePeer(), Submit(req_id=1, name="other_q", args=ARGS))
    engine.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS))
    clock.settle()
    assert [m.name for m in runs(other)] == ["other_q"]
    assert [m.name for m in runs(default)] == ["t"]


def test_a_resubmission_with_the_same_run_id_is_the_same_run(
    engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    w = worker(engine, 1, tasks=2)
    engine.submit(client, Submit(req_id=1, name="t", args=ARGS, run_id="r"))
    engine.submit(client, Submit(req_id=2, name="t", args=ARGS, run_id="r"))
    clock.settle()
    assert [m.run_id for m in client.take() if isinstance(m, Accepted)] == ["r", "r"]
    assert len(runs(w)) == 1


def test_draining_refuses_submits_and_reports_idle_once_tasks_end(
    engine: Engine, clock: ManualClock
) -> None:
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS))
    engine.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS))
    clock.settle()
    (task,) = runs(w)
    idle: list[int] = []
    engine.drain(lambda: idle.append(engine.in_flight()))
    late = FakePeer()
    engine.submit(late, Submit(req_id=3, name="t", args=ARGS))
    assert [getattr(m, "code", None) for m in late.take()] == ["shutting_down"]
    clock.settle()
    assert idle == [] and engine.in_flight() == 1
    engine.task_done(w, TaskDone(job_id=task.job_id, result=RESULT))
    clock.settle()
    assert idle == [0]
    assert sent(w) == []  # the queued job was not started
