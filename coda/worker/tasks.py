"""Running the tasks the supervisor hands this worker.

Async tasks run on the worker's event loop; sync tasks run in a thread pool
sized to the worker's task slots, so the loop stays free to drive workflows
while a sync task computes (or, for specs with ``main_thread``, one at a time
on the process's main thread while the loop runs on another). At most
``task_slots`` tasks run at once; tasks the supervisor sends beyond that
(prefetch) wait here, in order. Each task is announced with ``Started`` when
it starts (see supervisor/dispatch.py) and answered with one ``TaskDone``,
whatever its code raises (any ``BaseException``) or returns. A task may raise
``RetryRequested`` to run again later, possibly with new arguments. A stuck
task's watchdog may end the attempt at once (``TaskInfo.fail_now``): its
thread cannot be stopped, so the worker reports the failure and exits, and
the supervisor starts another in its place.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any

from .. import registry
from .._outcome import (
    decode_payload,
    encode_value,
    failure_after,
    failure_from,
    reraise_if_cancelled,
)
from ..context import TaskInfo, current_task
from ..decorators import Spec
from ..errors import CodaError, RequeueRequested, RetryRequested
from ..messages import Failure, Message, RunTask, Started, TaskDone
from ..serialization import DEFAULT_SERIALIZER
from ..serialization import registry as serializers

__all__ = ["ABANDONED_EXIT_CODE", "TaskRunner", "retry_done"]

log = logging.getLogger("coda.worker")

ABANDONED_EXIT_CODE = 70  # a task was failed by its watchdog; the pool replaces us


class TaskRunner:
    """The task slots of one worker.

    ``send`` queues a message to the supervisor; ``exit_after_flush`` ends
    the process once what was sent has left (used when a task is abandoned).
    """

    def __init__(
        self,
        send: Callable[[Message], None],
        exit_after_flush: Callable[[int], None],
        task_slots: int,
        accept: frozenset[str] | None = None,
        main_thread: Executor | None = None,
    ) -> None:
        self._send = send
        self._exit_after_flush = exit_after_flush
        self.accept = accept
        self._threads = ThreadPoolExecutor(max_workers=task_slots, thread_name_prefix="coda-task")
        self._task_slots = task_slots
        self._running_tasks = 0
        self._held: deque[RunTask] = deque()  # prefetched tasks waiting for a slot
        self._main_thread = main_thread
        self._starting: set[str] = set()  # announced with Started, begun next turn
        self._running: dict[str, tuple[asyncio.Task[None], bool]] = {}  # job id -> (it, async?)

    @property
    def in_flight(self) -> int:
        """Tasks started and not yet answered."""
        return self._running_tasks

    def start(self, msg: RunTask) -> None:
        if self._running_tasks < self._task_slots:
            self._launch(msg)
        else:
            self._held.append(msg)

    def _launch(self, msg: RunTask) -> None:
        """Announce the task, then start it one loop turn later: by then the
        ``Started`` has been written to the socket (uvloop writes at the end
        of a turn), so a task that kills this process at once is known to
        the supervisor as the one that was running (see supervisor/blame.py)."""
        self._running_tasks += 1
        self._send(Started(job_id=msg.job_id))
        self._starting.add(msg.job_id)
        asyncio.get_running_loop().call_soon(self._begin, msg)

    def _begin(self, msg: RunTask) -> None:
        if msg.job_id not in self._starting:
            return  # stopped in the meantime
        self._starting.discard(msg.job_id)
        job = asyncio.create_task(self._run_task(msg))
        self._running[msg.job_id] = (job, _is_async(msg.name))
        job.add_done_callback(lambda _: self._running.pop(msg.job_id, None))

    def stop(self, job_id: str) -> bool:
        """Cancel a task this runner holds: drop it if held back, cancel it if
        async and running. A sync task that runs cannot be stopped here (its
        thread cannot be interrupted): it finishes. False if not ours."""
        for held in self._held:
            if held.job_id == job_id:
                self._held.remove(held)
                self._send(TaskDone(job_id=job_id, failure=failure_from(_StoppedError())))
                return True
        if job_id in self._starting:  # announced, not begun: it never runs
            self._starting.discard(job_id)
            self._running_tasks -= 1
            self._send(TaskDone(job_id=job_id, failure=failure_from(_StoppedError())))
            if self._held:
                self._launch(self._held.popleft())
            return True
        running = self._running.get(job_id)
        if running is None:
            return False
        job, is_async = running
        if is_async:
            job.cancel()
        return True

    async def _run_task(self, msg: RunTask) -> None:
        """Run one task and answer it, whatever happens: the supervisor holds
        the slot, and the caller waits, until the ``TaskDone`` arrives."""
        try:
            done = await self._execute(msg)
        except BaseException as exc:  # cancelled (the loop is closing), or a bug of ours
            done = TaskDone(job_id=msg.job_id, failure=failure_from(exc))
            raise
        finally:
            self._running_tasks -= 1
            self._send(done)
            if self._held:
                self._launch(self._held.popleft())

    async def _execute(self, msg: RunTask) -> TaskDone:
        try:
            spec = registry.get_spec(msg.name, "task")
        except CodaError as exc:
            return TaskDone(job_id=msg.job_id, failure=failure_from(exc))
        loop = asyncio.get_running_loop()
        fail_now = partial(self._fail_now_threadsafe, loop, msg.job_id)
        info = TaskInfo(msg.job_id, msg.name, msg.attempt, msg.redelivered, fail_now, msg.requeued)
        current_task.set(info)  # this coroutine runs in its own asyncio task (own context)
        serializer = spec.serializer or DEFAULT_SERIALIZER
        try:
            kwargs = decode_payload(msg.args, self.accept)
            if spec.is_async:
                result = await _call_async(spec, kwargs)
            else:
                call = partial(contextvars.copy_context().run, spec.fn, **kwargs)
                result = await loop.run_in_executor(self._executor_for(spec), call)
            payload = encode_value(result, serializer)
        except RetryRequested as exc:  # the next attempt's args keep this one's encoding
            return retry_done(msg.job_id, exc, serializers.name_for(msg.args.content_type))
        except BaseException as exc:  # user code may raise anything: it is the task's failure
            reraise_if_cancelled(exc)
            return TaskDone(job_id=msg.job_id, failure=failure_after(exc, spec, msg.attempt))
        return TaskDone(job_id=msg.job_id, result=payload)

    def _executor_for(self, spec: Spec) -> Executor:
        if spec.main_thread and self._main_thread is not None:
            return self._main_thread
        return self._threads

    def _fail_now_threadsafe(
        self, loop: asyncio.AbstractEventLoop, job_id: str, exc: BaseException
    ) -> None:
        loop.call_soon_threadsafe(self._abandon, job_id, failure_from(exc))

    def _abandon(self, job_id: str, failure: Failure) -> None:
        """Report the stuck task as failed, then exit: its thread cannot be stopped."""
        log.error("task %s abandoned (%s); replacing this worker", job_id, failure.type_name)
        self._send(TaskDone(job_id=job_id, failure=failure))
        self._exit_after_flush(ABANDONED_EXIT_CODE)


async def _call_async(spec: Spec, kwargs: dict[str, Any]) -> Any:
    """Await an async task in the runner's own asyncio task, not in one of
    its own as ``wait_for`` would: a task whose coroutine raises SystemExit or
    KeyboardInterrupt re-raises it out of the event loop, ending the worker.
    (No timeout, no ``asyncio.timeout``: it costs a few microseconds a task.)"""
    if spec.timeout is None:
        return await spec.fn(**kwargs)
    async with asyncio.timeout(spec.timeout):
        return await spec.fn(**kwargs)


class _StoppedError(Exception):
    """The failure a dropped task reports (the supervisor records it cancelled)."""

    def __str__(self) -> str:
        return "cancelled before it started"


def _is_async(name: str) -> bool:
    try:
        return registry.get_spec(name, "task").is_async
    except CodaError:
        return False


def retry_done(job_id: str, exc: RetryRequested, serializer: str) -> TaskDone:
    """The answer to a task that asked to run again (with new arguments, maybe),
    or gave its delivery back (``RequeueRequested``: the supervisor picks when)."""
    if isinstance(exc, RequeueRequested):
        return TaskDone(job_id=job_id, failure=failure_from(exc.cause or exc), requeue=True)
    failure = failure_from(exc.cause or exc, exc.delay)
    try:
        args = None if exc.args_for_retry is None else encode_value(exc.args_for_retry, serializer)
    except CodaError as error:
        return TaskDone(job_id=job_id, failure=failure_from(error))
    return TaskDone(job_id=job_id, failure=failure, retry_args=args)
