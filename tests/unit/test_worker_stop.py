"""A worker stops what the supervisor cancels (``StopJob``), in-process with a
fake connection: the real runners, real coroutines and threads."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import coda
from coda._outcome import encode_value
from coda.messages import Message, RunTask, RunWorkflow, Started, StopJob, TaskDone, WorkflowDone
from coda.worker.connection import Worker, WorkerConnection

NO_ARGS = encode_value({}, "msgpack")
cleanups: list[str] = []
release_sync = threading.Event()
began: dict[str, threading.Event] = {"async": threading.Event(), "sync": threading.Event()}


@coda.task(name="test_worker_stop.forever")
async def forever() -> None:
    began["async"].set()
    await asyncio.Event().wait()


@coda.task(name="test_worker_stop.blocking")
def blocking() -> str:
    began["sync"].set()
    release_sync.wait(10)
    return "finished"


async def until_began(kind: str) -> None:
    assert await asyncio.to_thread(began[kind].wait, 10), f"the {kind} task never began"
    began[kind].clear()


@coda.workflow(name="test_worker_stop.waits")
async def waits() -> None:
    try:
        await asyncio.Event().wait()
    finally:
        cleanups.append("finally ran")


class Sink:
    def __init__(self) -> None:
        self.sent: list[Message] = []
        self.arrived = asyncio.Event()

    def send(self, message: Message) -> None:
        self.sent.append(message)
        self.arrived.set()

    async def until(self, kind: type[Any], count: int = 1) -> list[Any]:
        async with asyncio.timeout(10):
            while len(found := [m for m in self.sent if isinstance(m, kind)]) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return found


def run_worker(test: Any) -> None:
    async def main() -> None:
        worker = Worker(task_slots=1)
        sink = Sink()
        worker.conn = sink  # type: ignore[assignment]
        await test(worker, WorkerConnection(worker), sink)

    asyncio.run(main())


def test_a_stopped_workflow_gets_cancelled_at_its_await_and_its_finally_runs() -> None:
    async def check(worker: Worker, conn: WorkerConnection, sink: Sink) -> None:
        conn.message_received(RunWorkflow("r1", "test_worker_stop.waits", NO_ARGS, attempt=1))
        await asyncio.sleep(0)  # the attempt reaches its await
        conn.message_received(StopJob(job_id="r1"))
        (done,) = await sink.until(WorkflowDone)
        assert done.failure is not None and "CancelledError" in done.failure.type_name
        assert cleanups == ["finally ran"]

    run_worker(check)


def test_a_stopped_async_task_is_cancelled_and_its_slot_freed() -> None:
    async def check(worker: Worker, conn: WorkerConnection, sink: Sink) -> None:
        conn.message_received(RunTask("t1", "test_worker_stop.forever", NO_ARGS, attempt=1))
        conn.message_received(RunTask("t2", "test_worker_stop.forever", NO_ARGS, attempt=1))
        await until_began("async")
        conn.message_received(StopJob(job_id="t1"))
        (done,) = await sink.until(TaskDone)
        assert done.job_id == "t1" and done.failure is not None
        assert "CancelledError" in done.failure.type_name  # it ran, and was cancelled
        starts = await sink.until(Started, 2)  # the held one takes the freed slot
        assert [m.job_id for m in starts] == ["t1", "t2"]
        conn.message_received(StopJob(job_id="t2"))
        await sink.until(TaskDone, 2)

    run_worker(check)


def test_a_task_stopped_before_it_began_never_runs() -> None:
    async def check(worker: Worker, conn: WorkerConnection, sink: Sink) -> None:
        conn.message_received(RunTask("t1", "test_worker_stop.forever", NO_ARGS, attempt=1))
        conn.message_received(StopJob(job_id="t1"))  # in the same turn as its Started
        (done,) = await sink.until(TaskDone)
        assert done.failure is not None and "cancelled before it started" in done.failure.message
        assert not began["async"].is_set()

    run_worker(check)


def test_a_held_task_is_dropped_without_running_and_a_sync_one_finishes() -> None:
    async def check(worker: Worker, conn: WorkerConnection, sink: Sink) -> None:
        release_sync.clear()
        conn.message_received(RunTask("s1", "test_worker_stop.blocking", NO_ARGS, attempt=1))
        conn.message_received(RunTask("held", "test_worker_stop.blocking", NO_ARGS, attempt=1))
        await until_began("sync")
        conn.message_received(StopJob(job_id="held"))
        (dropped,) = await sink.until(TaskDone)
        assert dropped.job_id == "held" and dropped.failure is not None
        assert "cancelled before it started" in dropped.failure.message
        conn.message_received(StopJob(job_id="s1"))  # a running sync task: it finishes
        release_sync.set()
        finished = (await sink.until(TaskDone, 2))[1]
        assert finished.job_id == "s1" and finished.failure is None
        assert [m.job_id for m in sink.sent if isinstance(m, Started)] == ["s1"]

    run_worker(check)
