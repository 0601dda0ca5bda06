"""The public door: ``coda.__all__`` is pinned, and ``dir(coda)`` shows nothing else."""

from __future__ import annotations

import importlib

import coda

PUBLIC = [
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


def test_the_export_list_is_pinned() -> None:
    assert sorted(coda.__all__) == PUBLIC
    assert all(getattr(coda, name) is not None for name in PUBLIC)


def test_dir_shows_the_api_and_nothing_else_public() -> None:
    for internal in ("coda.testing", "coda.supervisor.supervisor", "coda.worker.connection"):
        importlib.import_module(internal)  # binds more submodules on the package
    assert [name for name in dir(coda) if not name.startswith("_")] == PUBLIC
    assert "__version__" in dir(coda)
