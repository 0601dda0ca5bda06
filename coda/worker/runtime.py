"""What a worker process does with the jobs the supervisor hands it.

Tasks: async tasks run on the worker's event loop; sync tasks run in a
thread pool sized to the worker's task slots, so the loop stays free to
drive workflows while a sync task computes (or, for specs with
``main_thread``, one at a time on the process's main thread while the loop
runs on another). At most ``task_slots`` tasks run at once; tasks the
supervisor sends beyond that (prefetch) wait here, in order. Each task is
announced with ``Started`` when it starts (see supervisor/dispatch.py). A
task may raise ``RetryRequested`` to run again later, possibly with new
arguments. Workflows: each is a coroutine on the loop, with a
``WorkflowRun`` as its runtime; its spawns are requests to the supervisor,
answered by ``Finished`` messages, except those a rerun finds in the
history sent with ``RunWorkflow``.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import os
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from typing import Any

import msgspec

from .. import registry
from .._outcome import decode_payload, encode_value, error_from_failure, failure_from
from .._wire import FramedProtocol
from ..context import RunInfo, TaskInfo, current_runtime, current_task
from ..decorators import Spec, check_name
from ..errors import CodaError, ConfigurationError, RequestRefusedError, RetryRequested
from ..messages import (
    CachedStep,
    Error,
    Failure,
    Finished,
    Message,
    Payload,
    RunTask,
    RunWorkflow,
    Spawn,
    Started,
    TaskDone,
    Welcome,
    WorkflowDone,
)
from ..serialization import DEFAULT_SERIALIZER
from ..serialization import registry as serializers

__all__ = ["Worker", "WorkerConnection"]

log = logging.getLogger("coda.worker")

_key_encoder = msgspec.msgpack.Encoder()


class WorkerConnection(FramedProtocol):
    """The worker's end of its socket pair with the supervisor."""

    def __init__(self, worker: Worker) -> None:
        super().__init__()
        self.worker = worker
        self.welcomed: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()

    def message_received(self, message: Message) -> None:
        match message:
            case RunTask():
                self.worker.start_task(message)
            case RunWorkflow():
                self.worker.start_workflow(message)
            case Finished():
                self.worker.resolve(message)
            case Error(req_id=int() as req_id):
                self.worker.reject(req_id, message)
            case Welcome() if not self.welcomed.done():
                self.welcomed.set_result(message)
            case Error():
                log.error("supervisor refused: %s: %s", message.code, message.message)
                if not self.welcomed.done():
                    self.welcomed.set_exception(RequestRefusedError(message.code, message.message))
            case _:
                log.warning("unexpected message from the supervisor: %r", message)


ABANDONED_EXIT_CODE = 70  # a task was failed by its watchdog; the pool replaces us


class Worker:
    def __init__(
        self,
        task_slots: int,
        accept: frozenset[str] | None = None,
        main_thread: Executor | None = None,
    ) -> None:
        self.accept = accept
        self.conn: WorkerConnection | None = None
        self._threads = ThreadPoolExecutor(max_workers=task_slots, thread_name_prefix="coda-task")
        self._task_slots = task_slots
        self._running_tasks = 0
        self._held: deque[RunTask] = deque()  # prefetched tasks waiting for a slot
        self._main_thread = main_thread
        self._req_ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._jobs: set[asyncio.Task[None]] = set()

    def send(self, message: Message) -> None:
        assert self.conn is not None
        self.conn.send(message)

    # -- tasks ------------------------------------------------------------

    def start_task(self, msg: RunTask) -> None:
        if self._running_tasks < self._task_slots:
            self._launch(msg)
        else:
            self._held.append(msg)

    def _launch(self, msg: RunTask) -> None:
        self._running_tasks += 1
        self.send(Started(job_id=msg.job_id))
        self._keep(asyncio.create_task(self._run_task(msg)))

    async def _run_task(self, msg: RunTask) -> None:
        done: TaskDone | None = None
        try:
            done = await self._execute(msg)
        finally:
            self._running_tasks -= 1
            if self._held:
                self._launch(self._held.popleft())
            if done is not None:
                self.send(done)

    async def _execute(self, msg: RunTask) -> TaskDone:
        try:
            spec = registry.get_spec(msg.name, "task")
        except CodaError as exc:
            return TaskDone(job_id=msg.job_id, failure=failure_from(exc))
        loop = asyncio.get_running_loop()
        fail_now = partial(self._fail_now_threadsafe, loop, msg.job_id)
        info = TaskInfo(msg.job_id, msg.name, msg.attempt, msg.redelivered, fail_now)
        current_task.set(info)  # this coroutine runs in its own asyncio task (own context)
        serializer = spec.serializer or DEFAULT_SERIALIZER
        try:
            kwargs = decode_payload(msg.args, self.accept)
            if spec.is_async:
                result = await asyncio.wait_for(spec.fn(**kwargs), spec.timeout)
            else:
                call = partial(contextvars.copy_context().run, spec.fn, **kwargs)
                result = await loop.run_in_executor(self._executor_for(spec), call)
            payload = encode_value(result, serializer)
        except RetryRequested as exc:  # the next attempt's args keep this one's encoding
            return _retry_done(msg.job_id, exc, serializers.name_for(msg.args.content_type))
        except Exception as exc:
            return TaskDone(
                job_id=msg.job_id, failure=failure_from(exc, spec.retry_in(exc, msg.attempt))
            )
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
        self.send(TaskDone(job_id=job_id, failure=failure))
        transport = None if self.conn is None else self.conn.transport
        if self.conn is not None and transport is not None:
            self.conn.close()  # hands the TaskDone to the transport first
            self._exit_when_flushed(transport, 100)
        else:
            os._exit(ABANDONED_EXIT_CODE)

    def _exit_when_flushed(self, transport: asyncio.Transport, tries: int) -> None:
        if transport.get_write_buffer_size() == 0 or tries <= 0:
            os._exit(ABANDONED_EXIT_CODE)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, self._exit_when_flushed, transport, tries - 1)

    # -- workflows --------------------------------------------------------

    def start_workflow(self, msg: RunWorkflow) -> None:
        self._keep(asyncio.create_task(self._run_workflow(msg)))

    async def _run_workflow(self, msg: RunWorkflow) -> None:
        run: WorkflowRun | None = None

        def done(result: Payload | None = None, failure: Any = None) -> None:
            hits = {} if run is None else dict(run.history_hits)
            self.send(
                WorkflowDone(
                    msg.run_id, msg.attempt, result=result, failure=failure, cache_hits=hits
                )
            )

        try:
            spec = registry.get_spec(msg.name, "workflow")
        except CodaError as exc:
            done(failure=failure_from(exc))
            return
        run = WorkflowRun(self, RunInfo(msg.run_id, msg.name, msg.attempt), spec, msg.history)
        token = current_runtime.set(run)
        try:
            kwargs = decode_payload(msg.args, self.accept)
            result = await spec.fn(**kwargs)
            payload = encode_value(result, spec.serializer or DEFAULT_SERIALIZER)
        except (Exception, RetryRequested) as exc:  # a workflow's retry is a failed attempt
            done(failure=failure_from(exc, spec.retry_in(exc, msg.attempt)))
            return
        finally:
            current_runtime.reset(token)
            run.abandon()
        done(result=payload)

    # -- answers to spawns ------------------------------------------------

    def request(self, spawn_for: str, build: Any) -> asyncio.Future[Any]:
        req_id = next(self._req_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (future, spawn_for)
        self.send(build(req_id))
        return future

    def resolve(self, msg: Finished) -> None:
        entry = self._pending.pop(msg.req_id, None)
        if entry is None or entry[0].done():
            return
        future, kind = entry
        if msg.failure is not None:
            future.set_exception(error_from_failure(msg.failure, kind))
            return
        try:
            future.set_result(decode_payload(msg.result, self.accept))
        except CodaError as exc:
            future.set_exception(exc)

    def reject(self, req_id: int, msg: Error) -> None:
        entry = self._pending.pop(req_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(RequestRefusedError(msg.code, msg.message))

    def forget(self, req_ids: list[int]) -> None:
        for req_id in req_ids:
            self._pending.pop(req_id, None)

    def _keep(self, job: asyncio.Task[None]) -> None:
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)


class WorkflowRun:
    """The runtime behind ``coda.context`` for one attempt of one workflow."""

    def __init__(
        self, worker: Worker, info: RunInfo, spec: Spec, history: Sequence[CachedStep] = ()
    ) -> None:
        self.worker = worker
        self.info = info
        self.serializer = spec.serializer or DEFAULT_SERIALIZER
        self._requests: list[int] = []
        self._history: dict[tuple[str, str, bytes], Payload] = {
            (step.kind, step.name, step.key): step.result for step in history
        }
        self.history_hits: Counter[str] = Counter()

    def spawn(
        self,
        kind: str,
        target: object,
        args: Mapping[str, Any] | None,
        cache_key: object,
        queue: str | None,
    ) -> asyncio.Future[Any]:
        name = check_name(registry.resolve_name(target))
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise ConfigurationError(
                f"args must be a mapping of keyword arguments, got {type(args).__name__}"
            )
        serializer = self._serializer_for(name)
        key = _encode_cache_key(cache_key)
        if key is not None and (kind, name, key) in self._history:
            return self._answer_from_history(kind, name, key)
        payload = encode_value(dict(args), serializer)

        def build(req_id: int) -> Spawn:
            self._requests.append(req_id)
            return Spawn(
                req_id=req_id,
                run_id=self.info.run_id,
                kind="task" if kind == "task" else "workflow",
                name=name,
                args=payload,
                cache_key=key,
                queue=queue,
            )

        return self.worker.request(kind, build)

    def _answer_from_history(self, kind: str, name: str, key: bytes) -> asyncio.Future[Any]:
        """A spawn this run made, and saw succeed, before it started again."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(decode_payload(self._history[(kind, name, key)], self.worker.accept))
        except CodaError as exc:
            future.set_exception(exc)
        self.history_hits[name] += 1
        return future

    def _serializer_for(self, name: str) -> str:
        try:
            return registry.get_spec(name).serializer or self.serializer
        except CodaError:
            return self.serializer

    def abandon(self) -> None:
        """Forget requests still unanswered when the attempt ends."""
        self.worker.forget(self._requests)


def _retry_done(job_id: str, exc: RetryRequested, serializer: str) -> TaskDone:
    failure = failure_from(exc.cause or exc, exc.delay)
    try:
        args = None if exc.args_for_retry is None else encode_value(exc.args_for_retry, serializer)
    except CodaError as error:
        return TaskDone(job_id=job_id, failure=failure_from(error))
    return TaskDone(job_id=job_id, failure=failure, retry_args=args)


def _encode_cache_key(cache_key: object) -> bytes | None:
    if cache_key is None:
        return None
    parts = list(cache_key) if isinstance(cache_key, list | tuple) else [cache_key]
    try:
        return _key_encoder.encode(parts)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ConfigurationError(
            f"cache_key must hold plain values (str, int, float, bool, None, bytes): {exc}"
        ) from None
