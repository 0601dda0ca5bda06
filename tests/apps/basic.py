"""Tasks and workflows the end-to-end tests run in real worker processes.

Executions are counted by appending a line to a file the test names, so a
test can tell how often a body really ran across processes and reruns.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import coda
from coda.testing import wait_until
from tests.apps.journal import lines, record


@coda.task()
def add(x: int, y: int) -> int:
    return x + y


@coda.task()
async def async_add(x: int, y: int) -> int:
    await asyncio.sleep(0)
    return x + y


@coda.task()
def noop() -> None:
    return None


@coda.task()
def count(path: str, label: str) -> str:
    record(path, label)
    return label.upper()


@coda.task(retry_on=(ConnectionError,), max_retries=3, retry_delay=0.05)
def flaky(path: str, fail_times: int) -> int:
    runs = record(path, "flaky")
    if runs <= fail_times:
        raise ConnectionError(f"flaky failure {runs}")
    return runs


@coda.task(retry_on=(ConnectionError,), max_retries=4, retry_delay=0.05, retry_backoff=2.0)
def flaky_backoff(path: str) -> list[float]:
    record(path, f"run {time.monotonic()}")
    runs = [float(line.split()[1]) for line in Path(path).read_text().splitlines()]
    if len(runs) <= 3:
        raise ConnectionError("not yet")
    return runs


@coda.task()
def always_fails(message: str) -> None:
    raise ValueError(message)


@coda.task()
def block_first_time(path: str) -> int:
    """The first execution writes its pid and hangs (to be killed); later ones return."""
    marker = Path(path)
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    return os.getpid()


@coda.task(timeout=0.5)
async def async_too_slow() -> None:
    await asyncio.sleep(30)


@coda.task(timeout=0.5)
def sync_too_slow() -> None:
    time.sleep(60)


@coda.task(timeout=1.0)
def quick_with_timeout() -> int:
    return os.getpid()


@coda.task()
def busy_until(gate: str) -> int:
    """Hold the slot until the test creates ``gate`` (at most 60 s)."""
    wait_until(lambda: os.path.exists(gate), timeout=60, what=f"the gate {gate}")
    return os.getpid()


@coda.task()
async def event_loop_module() -> str:
    """Where the worker's event loop class comes from (uvloop's, or asyncio's)."""
    return type(asyncio.get_running_loop()).__module__


@coda.task(queue="special")
def special_add(x: int, y: int) -> int:
    return x + y


@coda.workflow(max_retries=3)
async def cached_then_fail(path: str, fail_attempts: int) -> list[str]:
    a = await coda.context.spawn_task(count, args={"path": path, "label": "a"}, cache_key=["a"])
    b = await coda.context.spawn_task(count, args={"path": path, "label": "b"}, cache_key=["b"])
    record(path, "workflow")
    if coda.context.info().attempt <= fail_attempts:
        raise RuntimeError(f"failing attempt {coda.context.info().attempt}")
    return [a, b]


@coda.workflow(max_retries=2)
async def uncached_then_fail(path: str) -> str:
    label = await coda.context.spawn_task(count, args={"path": path, "label": "u"})
    if coda.context.info().attempt == 1:
        raise RuntimeError("first attempt fails")
    return str(label)


@coda.workflow()
async def fan_out(n: int) -> list[int]:
    spawns = [coda.context.spawn_task(add, args={"x": i, "y": i}) for i in range(n)]
    return list(await asyncio.gather(*spawns))


@coda.task()
def meet(path: str, label: str, parties: int) -> str:
    """A barrier across processes: arrive (a line in ``path``), then return only
    once ``parties`` tasks have arrived, so only tasks running at once succeed."""
    record(path, label)
    wait_until(lambda: len(lines(path)) >= parties, timeout=20, what=f"{parties} tasks at once")
    return label


@coda.workflow(max_retries=0)
async def gather_at_a_barrier(path: str, parties: int) -> list[str]:
    spawns = [
        coda.context.spawn_task(meet, args={"path": path, "label": f"t{i}", "parties": parties})
        for i in range(parties)
    ]
    return list(await asyncio.gather(*spawns))


@coda.workflow()
async def mixed_steps(x: int) -> int:
    a = await coda.context.spawn_task(add, args={"x": x, "y": 1})
    b = await coda.context.spawn_task(async_add, args={"x": a, "y": 1})
    return int(await coda.context.spawn_task("tests.apps.basic.add", args={"x": b, "y": 1}))


@coda.workflow()
async def child(x: int) -> int:
    return int(await coda.context.spawn_task(add, args={"x": x, "y": 100}))


@coda.workflow()
async def parent(x: int) -> dict[str, Any]:
    first = await coda.context.spawn_workflow(child, args={"x": x}, cache_key=["first"])
    both = await asyncio.gather(
        coda.context.spawn_workflow(child, args={"x": first}),
        coda.context.spawn_workflow("tests.apps.basic.child", args={"x": 0}),
    )
    return {"first": first, "both": list(both)}


@coda.workflow()
async def catches_failure(message: str) -> dict[str, str]:
    try:
        await coda.context.spawn_task(always_fails, args={"message": message})
    except coda.TaskFailed as exc:
        return {
            "type": exc.type_name,
            "message": exc.message,
            "has_traceback": str(bool(exc.remote_traceback)),
        }
    return {"type": "none"}


@coda.workflow(max_retries=0)
async def fails_for_good() -> None:
    await coda.context.spawn_task(always_fails, args={"message": "no luck"})


@coda.workflow(max_retries=0)
async def raises_in_workflow(message: str) -> None:
    raise ValueError(message)


@coda.workflow()
async def retries_a_task(path: str) -> int:
    return int(await coda.context.spawn_task(flaky, args={"path": path, "fail_times": 2}))


@coda.workflow()
async def survives_worker_kill(path: str, count_path: str) -> int:
    await coda.context.spawn_task(
        count, args={"path": count_path, "label": "before"}, cache_key=["b"]
    )
    pid = await coda.context.spawn_task(block_first_time, args={"path": path}, cache_key=["k"])
    return int(pid)


@coda.workflow(max_retries=0)
async def spawns_unknown() -> str:
    try:
        await coda.context.spawn_task("no.such.task", args={})
    except coda.CodaError as exc:
        return str(exc)
    return "no error"
