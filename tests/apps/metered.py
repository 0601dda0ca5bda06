"""A known workload for the metrics test: every name here is counted on its
own, so the test can assert exact figures per name."""

from __future__ import annotations

import asyncio

import coda
from tests.apps.journal import record


@coda.task()
def succeeds(x: int) -> int:
    return x


@coda.task()
def fails(message: str) -> None:
    raise ValueError(message)


@coda.task(retry_on=(ConnectionError,), max_retries=3, retry_delay=0.05)
def flaky(journal: str, fail_times: int) -> int:
    runs = record(journal, "flaky")
    if runs <= fail_times:
        raise ConnectionError(f"flaky failure {runs}")
    return runs


@coda.task()
def step(journal: str, name: str) -> str:
    record(journal, f"step {name}")
    return name


@coda.workflow(max_retries=1)
async def fails_once_after_two_steps(journal: str) -> list[str]:
    """Attempt 1 runs both steps, then fails; attempt 2 has them from the cache."""
    a = await coda.context.spawn_task(step, {"journal": journal, "name": "a"}, cache_key=["a"])
    b = await coda.context.spawn_task(step, {"journal": journal, "name": "b"}, cache_key=["b"])
    if coda.context.info().attempt == 1:
        raise RuntimeError("the first attempt fails after its steps")
    return [a, b]


@coda.task()
async def sleeps(journal: str) -> None:
    record(journal, "sleeps began")
    await asyncio.sleep(60)


@coda.workflow()
async def waits_on_a_sleeper(journal: str) -> None:
    await coda.context.spawn_task(sleeps, {"journal": journal})


@coda.task(queue="parked")
def parked() -> None:
    """On a queue no worker of the test consumes: it stays queued."""
