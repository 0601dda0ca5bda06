"""The workload of the fault harness: a workflow of cache-keyed steps whose
every execution leaves a line in a log, so the harness can count, after the
chaos, what ran how often and which result each run was given.

Log lines (fields separated by single spaces; one ``os.write`` on an
``O_APPEND`` descriptor per line, so lines from concurrent processes never
interleave and a SIGKILL leaves whole lines only):

    start RUN KEY PID EXEC   a step's body began (EXEC: fresh id of this execution)
    done  RUN KEY PID EXEC   the body finished; EXEC is the value it returns
    body  RUN BODY PID ATTEMPT   a workflow body began (BODY: fresh id)
    seen  RUN KEY EXEC BODY  that body was handed EXEC as the result of KEY
    end   RUN BODY           that body reached its end and returns
    poison RUN PID           a poison step began (it kills its worker at once)

The steps are cache-keyed, so a rerun of the workflow (after its worker died,
or after the supervisor restarted) must be handed the results already
recorded, never a fresh execution's.

A workflow given ``hold=KEY`` and a ``gate`` path runs step KEY up to its
``start`` line and then waits for the gate file: the harness kills that
worker while the step is certainly in its body, then creates the gate so the
rerun of the step goes through.
"""

from __future__ import annotations

import asyncio
import os
import time

import coda

FINAL = "final"


def record(log: str, *fields: object) -> None:
    line = (" ".join(str(field) for field in fields) + "\n").encode()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


GATE_TIMEOUT = 120.0  # a harness that died must not leave workers blocked for ever


def _execute(log: str, run: str, key: str, work_ms: float, gate: str = "") -> str:
    execution = os.urandom(6).hex()
    record(log, "start", run, key, os.getpid(), execution)
    deadline = time.monotonic() + GATE_TIMEOUT
    while gate and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)  # the step's body, held open until the harness has killed it
    time.sleep(work_ms / 1000)
    record(log, "done", run, key, os.getpid(), execution)
    return execution


@coda.task()
def step(log: str, run: str, key: str, work_ms: float, gate: str = "") -> str:
    """One unit of work; returns the id of the execution that did it."""
    return _execute(log, run, key, work_ms, gate)


@coda.task()
def finish(log: str, run: str, results: dict[str, str], work_ms: float) -> str:
    """The final step: it gets every step's result, as a real one would."""
    if not all(results.values()):
        raise ValueError(f"missing results: {results}")
    return _execute(log, run, FINAL, work_ms)


def step_keys(steps: int) -> list[str]:
    return [f"s{i}" for i in range(steps)]


@coda.workflow(max_retries=20)
async def pipeline(
    log: str, steps: int, work_ms: list[float], hold: str = "", gate: str = ""
) -> dict[str, str]:
    """Two steps in sequence, the rest in parallel, then the final step."""
    run = coda.context.info().run_id
    body = os.urandom(6).hex()
    record(log, "body", run, body, os.getpid(), coda.context.info().attempt)
    keys = step_keys(steps)
    results: dict[str, str] = {}

    async def one(index: int, key: str) -> None:
        args = {"log": log, "run": run, "key": key, "work_ms": work_ms[index]}
        if key == hold:
            args["gate"] = gate
        results[key] = await coda.context.spawn_task(step, args=args, cache_key=[key])
        record(log, "seen", run, key, results[key], body)

    for index, key in enumerate(keys[:2]):
        await one(index, key)
    await asyncio.gather(*(one(i, key) for i, key in enumerate(keys) if i >= 2))
    final_args = {"log": log, "run": run, "results": results, "work_ms": work_ms[-1]}
    results[FINAL] = await coda.context.spawn_task(finish, args=final_args, cache_key=[FINAL])
    record(log, "seen", run, FINAL, results[FINAL], body)
    record(log, "end", run, body)
    return results


@coda.task()
def poison(log: str, run: str) -> None:
    """Kills the worker process that runs it, every time."""
    record(log, "poison", run, os.getpid())
    os._exit(1)


@coda.workflow(max_retries=0)
async def poisoned(log: str, steps: int, work_ms: list[float]) -> None:
    """A run whose one step is poison: it fails as coda.WorkerLost, by design."""
    run = coda.context.info().run_id
    record(log, "body", run, os.urandom(6).hex(), os.getpid(), coda.context.info().attempt)
    await coda.context.spawn_task(poison, args={"log": log, "run": run}, cache_key=["poison"])
