"""The Coda tasks and workflows the benchmarks run (``-A bench.apps``).

Timing that only the workflow can see (a spawn's round trip, a cache hit, the
rerun of cached steps) is measured inside the workflow with
``time.perf_counter`` and returned as the workflow's result.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import coda

__all__ = [
    "async_noop",
    "clock",
    "ingest",
    "latency_probe",
    "noop",
    "preprocess",
    "process",
    "rerun_steps",
    "rerun_timed",
    "save",
    "step",
]


@coda.task()
def noop() -> None:
    """Does nothing: what is left is the engine's own cost."""


@coda.task()
async def async_noop() -> None:
    """An async no-op: runs on the worker's loop, no thread hand-off."""


@coda.task()
def step(i: int) -> int:
    return i


@coda.task()
def clock() -> float:
    """The wall-clock time when it ran (the same clock as the client's)."""
    return time.time()


@coda.task()
def preprocess(event: dict[str, Any]) -> dict[str, Any]:
    event["preprocessed"] = True
    return event


@coda.task()
def process(event: dict[str, Any]) -> dict[str, Any]:
    event["processed"] = len(event["frames"])
    return event


@coda.task()
def save(event: dict[str, Any]) -> str:
    return str(event["event_id"])


@coda.workflow()
async def ingest(event: dict[str, Any]) -> str:
    """Sentry's preprocess → process → save, each step cached by event id."""
    key = [event["event_id"]]
    event = await coda.context.spawn_task(preprocess, args={"event": event}, cache_key=key)
    event = await coda.context.spawn_task(process, args={"event": event}, cache_key=key)
    return str(await coda.context.spawn_task(save, args={"event": event}, cache_key=key))


@coda.workflow(max_retries=1, retry_delay=0.0)
async def rerun_steps(steps: int, fail_first: bool, gather: bool = False) -> float:
    """Run ``steps`` cached steps; with ``fail_first`` raise after attempt 1.

    Returns how long this attempt's steps took, so with ``fail_first`` the
    figure is the rerun of ``steps`` cached steps, measured where it happens.
    """
    started = time.perf_counter()
    if gather:
        spawns = [coda.context.spawn_task(step, args={"i": i}, cache_key=[i]) for i in range(steps)]
        await asyncio.gather(*spawns)
    else:
        for i in range(steps):
            await coda.context.spawn_task(step, args={"i": i}, cache_key=[i])
    elapsed = time.perf_counter() - started
    if fail_first and coda.context.info().attempt == 1:
        raise RuntimeError("first attempt fails on purpose, so the cached steps rerun")
    return elapsed


@coda.workflow(max_retries=1, retry_delay=0.0)
async def rerun_timed(steps: int) -> float:
    """``steps`` cached steps, then a cached ``clock`` step, then attempt 1
    fails; attempt 2 reruns every step from the cache and returns the time
    ``clock`` took on attempt 1. The client that receives it at ``t`` has
    waited ``t - returned`` for the rerun, end to end: attempt 1's failure
    reported, the retry scheduled, the run sent again with its history, the
    cached steps answered, its end committed and sent to the client."""
    for i in range(steps):
        await coda.context.spawn_task(step, args={"i": i}, cache_key=[i])
    failed_at = float(await coda.context.spawn_task(clock, cache_key=["failed-at"]))
    if coda.context.info().attempt == 1:
        raise RuntimeError("first attempt fails on purpose, so the cached steps rerun")
    return failed_at


@coda.workflow(max_retries=0)
async def latency_probe(samples: int) -> dict[str, list[float]]:
    """Seconds taken by each of ``samples`` no-op spawns (sync and async
    task) and cache hits."""
    timings: dict[str, list[float]] = {"spawn": [], "spawn_async": [], "hit": []}
    await coda.context.spawn_task(noop, cache_key=["hit"])
    for _ in range(samples):
        for name, task, key in (
            ("spawn", noop, None),
            ("spawn_async", async_noop, None),
            ("hit", noop, ["hit"]),
        ):
            started = time.perf_counter()
            await coda.context.spawn_task(task, cache_key=key)
            timings[name].append(time.perf_counter() - started)
    return timings
