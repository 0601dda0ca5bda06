"""Coda: durable, resumable Python workflows, and a way off Celery.

The public API is what this module exports (plus the modules
``coda.context``, ``coda.errors`` and ``coda.testing``)::

    @coda.task(...)        def or async def functions run by workers
    @coda.workflow(...)    async functions whose cached steps never run twice
    coda.context.spawn_task / spawn_workflow / info   inside a workflow
    coda.Client / coda.AsyncClient                    from application code

``dir(coda)`` lists only that API: importing it loads internal modules
(``coda.client``, ``coda.registry``, ...), which Python binds as attributes of
the package, but they are not part of the contract.
"""

from . import context, errors
from .async_client import AsyncClient, AsyncRunHandle
from .client import Client, RunHandle
from .decorators import TaskFunction, WorkflowFunction, task, workflow
from .errors import (
    Cancelled,
    CodaError,
    ConfigurationError,
    NotInWorkflowError,
    RemoteError,
    ResultTimeoutError,
    TaskFailed,
    UnknownNameError,
    WorkflowFailed,
)
from .messages import JobView
from .retry import RetryPolicy

__all__ = [
    "AsyncClient",
    "AsyncRunHandle",
    "Cancelled",
    "Client",
    "CodaError",
    "ConfigurationError",
    "JobView",
    "NotInWorkflowError",
    "RemoteError",
    "ResultTimeoutError",
    "RetryPolicy",
    "RunHandle",
    "TaskFailed",
    "TaskFunction",
    "UnknownNameError",
    "WorkflowFailed",
    "WorkflowFunction",
    "context",
    "errors",
    "task",
    "workflow",
]

__version__ = "0.1.0"


def __dir__() -> list[str]:
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
