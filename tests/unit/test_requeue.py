"""A task that gives its delivery back (``TaskDone.requeue``), driven through the
engine with a hand-driven clock: it comes back marked ``requeued``, the first
time at once and then after a doubling pause, and each requeue is counted."""

from __future__ import annotations

import pytest

from coda.errors import RequeueRequested
from coda.messages import CancelRun, Failure, RunTask, Submit, TaskDone
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine, WorkerHandle
from coda.supervisor.requeues import MAX_PAUSE, requeue_delay
from coda.worker.tasks import retry_done
from tests.unit.engine_fakes import ARGS, RESULT, FakePeer, runs, sent, worker

REJECTED = Failure("celery.exceptions.Reject", "not yet")


def first_delivery(engine: Engine, clock: ManualClock) -> tuple[WorkerHandle, RunTask]:
    """A worker, and the first delivery of task "t" (run id "job-1") it was sent."""
    w = worker(engine, 1)
    engine.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS, run_id="job-1"))
    clock.settle()
    (run,) = runs(w)
    return w, run


def give_back(engine: Engine, w: WorkerHandle, run: RunTask) -> None:
    engine.task_done(w, TaskDone(job_id=run.job_id, failure=REJECTED, requeue=True))


def test_the_pause_is_none_then_doubles_from_a_tenth_of_a_second_up_to_its_cap() -> None:
    assert [requeue_delay(n) for n in range(1, 7)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6]
    assert requeue_delay(10) == 25.6
    assert requeue_delay(11) == requeue_delay(10_000) == MAX_PAUSE


def test_a_requeued_task_comes_back_marked_with_its_arguments_and_attempt(
    engine: Engine, clock: ManualClock
) -> None:
    w, first = first_delivery(engine, clock)
    assert first.requeued is False
    give_back(engine, w, first)
    clock.settle()
    (second,) = runs(w)
    assert (second.job_id, second.args, second.attempt) == ("job-1", ARGS, 1)
    assert second.requeued is True and second.redelivered is False
    assert engine.counts["t"]["requeued"] == 1 and "retried" not in engine.counts["t"]


def test_a_task_that_keeps_giving_back_waits_longer_each_time(
    engine: Engine, clock: ManualClock
) -> None:
    w, run = first_delivery(engine, clock)
    give_back(engine, w, run)  # the first requeue: at once
    clock.settle()
    run = runs(w)[0]
    for pause in (0.1, 0.2, 0.4, 0.8):
        give_back(engine, w, run)
        clock.advance(pause * 0.99)
        assert sent(w) == [] and engine.status()["delayed"] == 1
        clock.advance(pause * 0.02)
        run = runs(w)[0]
    assert engine.counts["t"]["requeued"] == 5
    engine.task_done(w, TaskDone(job_id=run.job_id, result=RESULT))
    clock.settle()
    assert engine.counts["t"]["succeeded"] == 1


def test_a_retry_ends_the_run_of_requeues(engine: Engine, clock: ManualClock) -> None:
    w, run = first_delivery(engine, clock)
    give_back(engine, w, run)
    clock.settle()
    give_back(engine, w, runs(w)[0])
    clock.advance(0.1)
    retry = Failure("ConnectionError", "again", retry_in=0.0)
    engine.task_done(w, TaskDone(job_id=runs(w)[0].job_id, failure=retry))
    clock.advance(0)
    after_retry = runs(w)[0]
    assert after_retry.requeued is False and after_retry.attempt == 2
    give_back(engine, w, after_retry)  # the new message's first requeue: at once again
    clock.settle()
    assert runs(w)[0].requeued is True


def test_a_cancelled_task_that_gives_back_ends_cancelled(
    engine: Engine, clock: ManualClock
) -> None:
    w, run = first_delivery(engine, clock)
    engine.cancel(FakePeer(), CancelRun(req_id=2, run_id="job-1"))
    give_back(engine, w, run)
    clock.advance(60)
    assert [m for m in sent(w) if isinstance(m, RunTask)] == []
    assert engine.counts["t"]["cancelled"] == 1 and "requeued" not in engine.counts["t"]


@pytest.mark.parametrize("cause", [ValueError("not yet"), None])
def test_the_worker_answers_a_requeue_request_with_requeue_and_its_cause(
    cause: BaseException | None,
) -> None:
    done = retry_done("job-1", RequeueRequested(cause=cause), "msgpack")
    assert done.requeue is True and done.retry_args is None
    assert done.failure is not None and done.failure.retry_in is None
    expected = "ValueError" if cause is not None else "coda.errors.RequeueRequested"
    assert done.failure.type_name == expected
