"""Runs an operator steers from outside: cancelled, listed, shown, purged."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import coda
from tests.apps.journal import record


@coda.task()
async def sleeps(journal: str, seconds: float) -> str:
    record(journal, "sleeps began")
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        record(journal, "sleeps cancelled")
        raise
    record(journal, "sleeps ended")
    return "slept"


@coda.task()
def blocks(journal: str, gate: str) -> str:
    """A sync task that runs until its gate file appears (or 60 s)."""
    record(journal, "blocks began")
    deadline = time.monotonic() + 60
    while not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # a task body polling its gate, not a test waiting
    record(journal, "blocks ended")
    return "unblocked"


@coda.task(queue="parked")
def parked(journal: str) -> None:
    record(journal, "parked ran")


@coda.task()
def step(journal: str, name: str) -> str:
    record(journal, f"step {name}")
    return name


@coda.workflow()
async def cancellable(journal: str) -> str:
    record(journal, "workflow began")
    try:
        return str(await coda.context.spawn_task(sleeps, {"journal": journal, "seconds": 60}))
    finally:
        record(journal, "workflow finally")


@coda.workflow(max_retries=1)
async def two_steps_then_fails_once(journal: str) -> str:
    first = await coda.context.spawn_task(step, {"journal": journal, "name": "a"}, cache_key=["a"])
    if coda.context.info().attempt == 1:
        raise RuntimeError("the first attempt fails after step a")
    second = await coda.context.spawn_task(step, {"journal": journal, "name": "b"}, cache_key=["b"])
    return f"{first}{second}"


@coda.task()
def breaks(journal: str) -> None:
    record(journal, "breaks ran")
    raise ValueError("the step broke")


@coda.workflow(max_retries=0)
async def fails_in_a_step(journal: str) -> None:
    await coda.context.spawn_task(step, {"journal": journal, "name": "ok"}, cache_key=["ok"])
    await coda.context.spawn_task(breaks, {"journal": journal}, cache_key=["broken"])
