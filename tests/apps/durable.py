"""Tasks and workflows for the durability tests: steps that can be held at a
gate (a file the test creates) so a supervisor can be killed or stopped while
work is queued, running and cached. Executions are counted in a file, as in
tests/apps/basic.py."""

from __future__ import annotations

import time
from pathlib import Path

import coda
from tests.apps import basic  # noqa: F401  (its tasks, e.g. noop, are served alongside)
from tests.apps.journal import record


@coda.task()
def step(path: str, label: str) -> str:
    record(path, label)
    return label


@coda.task()
def held(path: str, label: str, gate: str) -> str:
    """Records ``label-start``, waits for the gate file, records ``label``."""
    record(path, f"{label}-start")
    deadline = time.monotonic() + 120
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    record(path, label)
    return label


@coda.workflow()
async def pipeline(path: str, i: int, gate: str) -> list[str]:
    """A cached step, a held step, another cached step."""
    first = await coda.context.spawn_task(
        step, args={"path": path, "label": f"a{i}"}, cache_key=["a"]
    )
    middle = await coda.context.spawn_task(
        held, args={"path": path, "label": f"g{i}", "gate": gate}, cache_key=["g"]
    )
    last = await coda.context.spawn_task(
        step, args={"path": path, "label": f"b{i}"}, cache_key=["b"]
    )
    return [first, middle, last]
