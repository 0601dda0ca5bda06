"""Tasks that take or make large values: what finished work keeps in the
supervisor's memory, and values above the frame limit."""

from __future__ import annotations

import coda
from tests.apps.journal import record


@coda.task()
def length(blob: bytes) -> int:
    """Takes a large argument, returns a small result."""
    return len(blob)


@coda.task()
def make_blob(size: int, path: str) -> bytes:
    """Returns a result of ``size`` bytes; each run is journaled to ``path``."""
    record(path, "make_blob")
    return b"x" * size


@coda.task()
def echo(blob: bytes) -> bytes:
    return blob


@coda.workflow(max_retries=2)
async def spawn_with(size: int, path: str) -> str:
    """Spawns a task with an argument of ``size`` bytes; says what the spawn
    raised (each attempt is journaled to ``path``)."""
    record(path, "spawn_with")
    try:
        await coda.context.spawn_task(length, args={"blob": b"x" * size})
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "spawned"


@coda.workflow(max_retries=2)
async def large_result(size: int, path: str) -> bytes:
    """Returns ``size`` bytes; each attempt is journaled to ``path``."""
    record(path, "large_result")
    return b"x" * size
