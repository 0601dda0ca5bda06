"""Functions a running workflow calls: ``spawn_task``, ``spawn_workflow``, ``info``
(and ``task_info`` for a running task).

Each is a one-liner that finds the runtime of the workflow being executed
through a ``ContextVar`` (as Temporal's ``workflow.*`` functions do), so the
same code works whichever worker runs it and raises a clear error outside a
workflow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

from .errors import NotInWorkflowError

if TYPE_CHECKING:
    from .decorators import TaskFunction, WorkflowFunction

__all__ = [
    "NamedTarget",
    "RunInfo",
    "TaskInfo",
    "in_workflow",
    "info",
    "spawn_task",
    "spawn_workflow",
    "task_info",
]


R = TypeVar("R")


class NamedTarget(Protocol):
    """What else a spawn accepts besides a registered name: an object carrying
    its registered name, such as a Celery task. Its result type is unknown."""

    @property
    def name(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Which run this is: its id, the workflow's name and the attempt (1-based)."""

    run_id: str
    name: str
    attempt: int


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """The task attempt being executed by this thread or coroutine.

    ``redelivered``: a worker that held this job before died. ``fail_now``,
    callable from any thread, ends the attempt at once with that exception
    and replaces the worker process (for a watchdog whose task is stuck).
    ``requeued``: the task gave its last delivery back (``RequeueRequested``)
    and this is the next one.
    """

    job_id: str
    name: str
    attempt: int
    redelivered: bool
    fail_now: Callable[[BaseException], None]
    requeued: bool = False


current_task: ContextVar[TaskInfo | None] = ContextVar("coda_task", default=None)


def task_info() -> TaskInfo | None:
    """The running task's id, name and attempt; None outside a task."""
    return current_task.get()


class WorkflowRuntime(Protocol):
    info: RunInfo

    def spawn(
        self,
        kind: str,
        target: object,
        args: Mapping[str, Any] | None,
        cache_key: object,
        queue: str | None,
    ) -> Awaitable[Any]: ...


current_runtime: ContextVar[WorkflowRuntime | None] = ContextVar("coda_workflow", default=None)


def _runtime(what: str) -> WorkflowRuntime:
    runtime = current_runtime.get()
    if runtime is None:
        raise NotInWorkflowError(
            f"coda.context.{what}() can only be called inside a running @coda.workflow"
        )
    return runtime


# Overloads, as temporalio types execute_activity: a decorated function gives
# the type its body returns (awaited, for an async task); a name or a Celery
# task gives Any.
@overload
def spawn_task(
    task: TaskFunction[..., Awaitable[R]],
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[R]: ...


@overload
def spawn_task(
    task: TaskFunction[..., R],
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[R]: ...


@overload
def spawn_task(
    task: str | NamedTarget,
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[Any]: ...


def spawn_task(
    task: object,
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[Any]:
    """Run a task and return an awaitable of its result.

    The request leaves at once, so several spawns awaited together (e.g. with
    ``asyncio.gather``) run in parallel. With a ``cache_key`` (a list of
    values) the result is stored for this workflow run: spawning the same
    task with the same key again, in this attempt or a rerun, returns the
    stored result without running the task. A failure is raised as
    ``coda.TaskFailed`` when awaited.
    """
    return _runtime("spawn_task").spawn("task", task, args, cache_key, queue)


@overload
def spawn_workflow(
    workflow: WorkflowFunction[..., Awaitable[R]],
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[R]: ...


@overload
def spawn_workflow(
    workflow: str | NamedTarget,
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[Any]: ...


def spawn_workflow(
    workflow: object,
    args: Mapping[str, Any] | None = None,
    *,
    cache_key: object = None,
    queue: str | None = None,
) -> Awaitable[Any]:
    """Run a child workflow and return an awaitable of its result.

    With a ``cache_key`` a rerun of this workflow attaches to the same child
    run instead of starting another. A failure is raised as
    ``coda.WorkflowFailed`` when awaited.
    """
    return _runtime("spawn_workflow").spawn("workflow", workflow, args, cache_key, queue)


def info() -> RunInfo:
    """The current workflow run's id, name and attempt."""
    return _runtime("info").info


def in_workflow() -> bool:
    return current_runtime.get() is not None
