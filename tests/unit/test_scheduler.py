"""Scheduling logic with fake peers: slots, leases, caching, retries, requeues."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from coda.messages import (
    Accepted,
    Error,
    Failure,
    Finished,
    Message,
    Payload,
    RunTask,
    RunWorkflow,
    Spawn,
    Started,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.supervisor.memory_store import MemoryStore
from coda.supervisor.scheduler import Scheduler, WorkerHandle

ARGS = Payload("application/x-msgpack", "binary", b"\x80")
RESULT = Payload("application/x-msgpack", "binary", b"\x2a")


@dataclass
class FakePeer:
    sent: list[Message] = field(default_factory=list)
    is_open: bool = True

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def take(self) -> list[Message]:
        taken, self.sent = self.sent, []
        return taken


@dataclass(frozen=True)
class Info:
    kind: str
    queue: str = "default"
    timeout: float | None = None


NAMES = {
    "t": Info("task"),
    "w": Info("workflow"),
    "other_q": Info("task", queue="other"),
    "slow": Info("task", timeout=5.0),
}


def lookup(name: str) -> Info:
    from coda.errors import UnknownNameError

    if name not in NAMES:
        raise UnknownNameError(name)
    return NAMES[name]


def run(test: Callable[[Scheduler], Awaitable[None]]) -> None:
    async def main() -> None:
        scheduler = Scheduler(MemoryStore(), lookup, accept_content=frozenset({ARGS.content_type}))
        await test(scheduler)

    asyncio.run(main())


async def turn() -> None:
    """Let call_soon callbacks (the pump) run."""
    for _ in range(3):
        await asyncio.sleep(0)


async def until_sent(peer: FakePeer, kind: type[Message], timeout: float = 10.0) -> None:
    """Wait, with a deadline, until ``peer`` has been sent a ``kind`` (a timer's job)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not any(isinstance(m, kind) for m in peer.sent):
        assert asyncio.get_running_loop().time() < deadline, f"no {kind.__name__} sent"
        await asyncio.sleep(0.001)


def worker(
    scheduler: Scheduler,
    worker_id: int,
    tasks: int = 1,
    workflows: int = 10,
    queues: tuple[str, ...] = ("default",),
) -> WorkerHandle:
    handle = WorkerHandle(worker_id, FakePeer(), 100 + worker_id, queues, tasks, workflows)
    scheduler.worker_joined(handle)
    return handle


def sent(handle: WorkerHandle) -> list[Message]:
    return handle.peer.take()  # type: ignore[attr-defined]


def test_no_prefetch_beyond_free_slots() -> None:
    async def check(s: Scheduler) -> None:
        client = FakePeer()
        w = worker(s, 1, tasks=2)
        for i in range(5):
            s.submit(client, Submit(req_id=i, name="t", args=ARGS))
        await turn()
        runs = [m for m in sent(w) if isinstance(m, RunTask)]
        assert len(runs) == 2
        s.task_done(w, TaskDone(job_id=runs[0].job_id, result=RESULT))
        await turn()
        assert len([m for m in sent(w) if isinstance(m, RunTask)]) == 1
        assert all(isinstance(m, Accepted) for m in client.take())

    run(check)


def test_workflow_slots_are_separate_from_task_slots() -> None:
    async def check(s: Scheduler) -> None:
        client = FakePeer()
        w = worker(s, 1, tasks=1, workflows=1)
        s.submit(client, Submit(req_id=1, name="w", args=ARGS, wait=True))
        await turn()
        (run_wf,) = [m for m in sent(w) if isinstance(m, RunWorkflow)]
        s.spawn(w, Spawn(req_id=7, run_id=run_wf.run_id, kind="task", name="t", args=ARGS))
        await turn()
        (run_task,) = [m for m in sent(w) if isinstance(m, RunTask)]
        assert run_task.run_id == run_wf.run_id
        s.task_done(w, TaskDone(job_id=run_task.job_id, result=RESULT))
        await turn()
        assert sent(w) == [Finished(req_id=7, run_id=run_task.job_id, kind="task", result=RESULT)]
        s.workflow_done(w, WorkflowDone(run_id=run_wf.run_id, attempt=1, result=RESULT))
        await turn()
        assert client.take()[-1] == Finished(1, run_wf.run_id, "workflow", RESULT)

    run(check)


def test_cache_hit_answers_from_the_store_and_reattaches_to_running_jobs() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1)
        s.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
        await turn()
        (wf,) = sent(w)
        assert isinstance(wf, RunWorkflow)
        spawn = Spawn(req_id=1, run_id=wf.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")
        s.spawn(w, spawn)
        s.spawn(w, Spawn(**{**_fields(spawn), "req_id": 2}))  # same key while running: attach
        await turn()
        runs = [m for m in sent(w) if isinstance(m, RunTask)]
        assert len(runs) == 1
        s.task_done(w, TaskDone(job_id=runs[0].job_id, result=RESULT))
        await turn()
        assert sorted(m.req_id for m in sent(w) if isinstance(m, Finished)) == [1, 2]
        s.spawn(w, Spawn(**{**_fields(spawn), "req_id": 3}))  # finished: answered at once
        assert sent(w) == [Finished(3, runs[0].job_id, "task", RESULT)]
        assert s.counts["t"]["cache_hits"] == 2

    run(check)


def test_failed_cached_job_runs_again() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1)
        s.submit(FakePeer(), Submit(req_id=1, name="w", args=ARGS))
        await turn()
        (wf,) = sent(w)
        spawn = Spawn(req_id=1, run_id=wf.run_id, kind="task", name="t", args=ARGS, cache_key=b"k")  # type: ignore[attr-defined]
        s.spawn(w, spawn)
        await turn()
        (first,) = [m for m in sent(w) if isinstance(m, RunTask)]
        s.task_done(w, TaskDone(job_id=first.job_id, failure=Failure("E", "boom")))
        await turn()
        sent(w)
        s.spawn(w, Spawn(**{**_fields(spawn), "req_id": 2}))
        await turn()
        (second,) = [m for m in sent(w) if isinstance(m, RunTask)]
        assert second.job_id != first.job_id

    run(check)


def test_retry_waits_then_runs_the_next_attempt() -> None:
    async def check(s: Scheduler) -> None:
        w = worker(s, 1)
        s.submit(FakePeer(), Submit(req_id=1, name="t", args=ARGS))
        await turn()
        (first,) = sent(w)
        assert isinstance(first, RunTask)
        s.task_done(w, TaskDone(job_id=first.job_id, failure=Failure("E", "x", retry_in=0.01)))
        await turn()
        assert sent(w) == [] and s.status()["delayed"] == 1
        await until_sent(w.peer, RunTask)  # type: ignore[arg-type]
        (second,) = sent(w)
        assert isinstance(second, RunTask) and second.attempt == 2
        assert s.counts["t"]["retried"] == 1

    run(check)


def test_dead_worker_jobs_go_back_to_the_head_of_the_queue() -> None:
    async def check(s: Scheduler) -> None:
        client = FakePeer()
        w1 = worker(s, 1)
        for i in range(3):
            s.submit(client, Submit(req_id=i, name="t", args=ARGS))
        await turn()
        (held,) = sent(w1)
        s.worker_left(1)
        w2 = worker(s, 2)
        await turn()
        (again,) = sent(w2)
        assert isinstance(again, RunTask) and isinstance(held, RunTask)
        assert again.job_id == held.job_id  # head of the queue, not behind the others
        s.task_done(w1, TaskDone(job_id=held.job_id, result=RESULT))  # late: ignored
        assert s.status()["jobs_in_flight"] == 3

    run(check)


def test_poison_job_fails_after_repeated_worker_deaths() -> None:
    async def check(s: Scheduler) -> None:
        client = FakePeer()
        s.submit(client, Submit(req_id=1, name="t", args=ARGS, wait=True))
        for worker_id in range(1, 8):
            w = worker(s, worker_id)
            await turn()
            for message in sent(w):  # it starts the job, which kills it
                if isinstance(message, RunTask):
                    s.started(w, Started(job_id=message.job_id))
            s.worker_left(worker_id)
        finished = [m for m in client.take() if isinstance(m, Finished)]
        assert finished and finished[0].failure is not None
        assert finished[0].failure.type_name == "coda.WorkerLost"

    run(check)


def test_refusals() -> None:
    async def check(s: Scheduler) -> None:
        client = FakePeer()
        s.submit(client, Submit(req_id=1, name="missing", args=ARGS))
        pickled = Payload("application/x-python-serialize", "binary", b"")
        s.submit(client, Submit(req_id=2, name="t", args=pickled))
        w = worker(s, 1)
        s.spawn(w, Spawn(req_id=3, run_id="nope", kind="task", name="t", args=ARGS))
        errors = client.take()
        assert [(e.code, e.req_id) for e in errors] == [  # type: ignore[attr-defined]
            ("unknown_name", 1),
            ("content_disallowed", 2),
        ]
        (stale,) = sent(w)
        assert isinstance(stale, Error) and stale.code == "stale_run"

    run(check)


def test_dedicated_queues() -> None:
    async def check(s: Scheduler) -> None:
        default = worker(s, 1)
        other = worker(s, 2, queues=("other",))
        s.submit(FakePeer(), Submit(req_id=1, name="other_q", args=ARGS))
        s.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS))
        await turn()
        assert [m.name for m in sent(other)] == ["other_q"]  # type: ignore[attr-defined]
        assert [m.name for m in sent(default)] == ["t"]  # type: ignore[attr-defined]

    run(check)


def _fields(spawn: Spawn) -> dict[str, object]:
    return {f: getattr(spawn, f) for f in spawn.__struct_fields__}
