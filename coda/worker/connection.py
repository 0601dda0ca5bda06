"""A worker's link to its supervisor: the one socket it has, and what
arrives on it handed to the task and workflow runners.

The supervisor is the only peer a worker talks to. It sends ``RunTask``
and ``RunWorkflow`` (to the runners in tasks.py and workflows.py) and the
answers to a workflow's spawns (``Finished``, or an ``Error`` naming the
request it refuses). When the connection closes, the supervisor is gone
(it died, or it is stopping us): a worker with work in flight exits at once,
abandoning it (see orphan.py); an idle one returns from ``serve``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import Executor

from .._wire import FramedProtocol
from ..errors import RequestRefusedError
from ..messages import Error, Finished, Message, RunTask, RunWorkflow, StopJob, Welcome
from ..protocol import DEFAULT_FRAME_LIMIT, decoding_limit
from .orphan import exit_orphaned
from .tasks import TaskRunner
from .workflows import WorkflowRunner

__all__ = ["Worker", "WorkerConnection"]

log = logging.getLogger("coda.worker")


class Worker:
    """One worker process: its task and workflow runners, and ``conn``, the
    connection they answer through."""

    def __init__(
        self,
        task_slots: int,
        accept: frozenset[str] | None = None,
        main_thread: Executor | None = None,
        value_limit: int = DEFAULT_FRAME_LIMIT,
    ) -> None:
        self.accept = accept
        self.value_limit = value_limit  # the supervisor's frame limit: see coda.protocol
        self.conn: WorkerConnection | None = None
        self._exiting = False  # we close the connection ourselves on the way out
        self.tasks = TaskRunner(
            self.send, self.exit_after_flush, task_slots, accept, main_thread, value_limit
        )
        self.workflows = WorkflowRunner(self.send, accept, value_limit)

    def send(self, message: Message) -> None:
        assert self.conn is not None
        self.conn.send(message)

    def supervisor_gone(self) -> None:
        """The connection closed: whatever is in flight can no longer be
        answered, and the supervisor (or its successor) will run it again."""
        tasks, workflows = self.tasks.in_flight, self.workflows.in_flight
        if (tasks or workflows) and not self._exiting:
            exit_orphaned(
                "the supervisor is gone; abandoning %d task(s) and %d workflow(s)",
                tasks,
                workflows,
            )

    def exit_after_flush(self, code: int) -> None:
        """End the process once what was sent has been handed to the kernel
        (or after about a second), without waiting for anything else."""
        self._exiting = True
        transport = None if self.conn is None else self.conn.transport
        if self.conn is not None and transport is not None:
            self.conn.close()  # hands the queued messages to the transport first
            self._exit_when_flushed(transport, code, 100)
        else:
            os._exit(code)

    def _exit_when_flushed(self, transport: asyncio.Transport, code: int, tries: int) -> None:
        if transport.get_write_buffer_size() == 0 or tries <= 0:
            os._exit(code)
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, self._exit_when_flushed, transport, code, tries - 1)


class WorkerConnection(FramedProtocol):
    """The worker's end of its socket pair with the supervisor."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(decoding_limit(worker.value_limit))
        self.worker = worker
        self.welcomed: asyncio.Future[Welcome] = asyncio.get_running_loop().create_future()

    def message_received(self, message: Message) -> None:
        match message:
            case RunTask():
                self.worker.tasks.start(message)
            case RunWorkflow():
                self.worker.workflows.start(message)
            case Finished():
                self.worker.workflows.resolve(message)
            case StopJob(job_id=job_id):
                if not self.worker.workflows.stop(job_id):
                    self.worker.tasks.stop(job_id)
            case Error(req_id=int() as req_id):
                self.worker.workflows.reject(req_id, message)
            case Welcome() if not self.welcomed.done():
                self.welcomed.set_result(message)
            case Error():
                log.error("supervisor refused: %s: %s", message.code, message.message)
                if not self.welcomed.done():
                    self.welcomed.set_exception(RequestRefusedError(message.code, message.message))
            case _:
                log.warning("unexpected message from the supervisor: %r", message)

    def on_closed(self, exc: Exception | None) -> None:
        if not self.welcomed.done():
            self.welcomed.set_exception(
                ConnectionError("the supervisor closed the connection before welcoming this worker")
            )
        self.worker.supervisor_gone()
