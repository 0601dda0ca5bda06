"""What the public surface's types promise, checked by mypy (``[tool.mypy] files``
includes this directory; ``.ci/run`` runs mypy) and never run by pytest.

``assert_type`` fails the type check when a type differs, ``Any`` included; a
``type: ignore[...]`` marks a call that must be refused, and strict mypy's
``warn_unused_ignores`` fails the check if it is accepted.
"""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine
from typing import Any, assert_type

import coda
from coda.context import spawn_task, spawn_workflow


@coda.task
def add(x: int, y: int) -> int:
    return x + y


@coda.task(retry_on=[ConnectionError], max_retries=2)
async def fetch(url: str) -> bytes:
    return url.encode()


@coda.workflow
async def child(n: int) -> list[str]:
    return [str(n)]


def not_registered(x: int) -> int:
    return x


@coda.workflow()
async def parent(celery_task: Any) -> None:
    # the decorators keep the function's signature, in both forms
    typed_task: coda.TaskFunction[[int, int], int] = add
    typed_workflow: coda.WorkflowFunction[[int], Coroutine[Any, Any, list[str]]] = child
    assert_type(typed_task(1, 2), int)
    assert_type(await fetch("u"), bytes)
    assert_type(typed_workflow, coda.WorkflowFunction[[int], Coroutine[Any, Any, list[str]]])
    add("1", 2)  # type: ignore[arg-type]

    # a decorated task or workflow gives its result type; an async one's awaited
    assert_type(spawn_task(add, args={"x": 1, "y": 2}), Awaitable[int])
    assert_type(await spawn_task(fetch, args={"url": "u"}, cache_key=["u"]), bytes)
    assert_type(spawn_workflow(child, args={"n": 1}), Awaitable[list[str]])

    # a name or a Celery task object (untyped) gives Any
    assert_type(spawn_task("tests.apps.basic.add", args={}), Awaitable[Any])
    assert_type(spawn_task(celery_task), Awaitable[Any])
    assert_type(spawn_workflow("tests.apps.basic.child"), Awaitable[Any])

    # a plain function was never registered: refused before it runs
    spawn_task(not_registered, args={"x": 1})  # type: ignore[call-overload]
    spawn_workflow(not_registered)  # type: ignore[call-overload]
