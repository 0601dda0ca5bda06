"""What durability costs: no-op task throughput on the SQLite store vs memory.

``python -m bench.store_cost [--tasks 2000] [--rounds 3] [--workers 2] [--mode run|submit]``

Each round starts a fresh supervisor per store (alternating, so drift on a
shared machine hits both), warms it up, then sends ``--tasks`` no-op tasks
through one ``AsyncClient``, all at once: ``run`` mode submits each with
``wait`` (one request per task), ``submit`` mode submits them all and then
awaits each handle (so most results are read back from the store). It
prints tasks per second and the supervisor process's CPU time per task (user
+ system, all its threads: steadier than wall time on a busy machine); the
summary is the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path

from coda import AsyncClient
from coda.testing import SupervisorProcess

NOOP = "bench.apps.noop"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _batch(client: AsyncClient, tasks: int, mode: str) -> None:
    if mode == "run":
        await asyncio.gather(*(client.run(NOOP, timeout=300) for _ in range(tasks)))
        return
    handles = await asyncio.gather(*(client.submit(NOOP) for _ in range(tasks)))
    await asyncio.gather(*(handle.result(timeout=300) for handle in handles))


async def _measure(address: str, pid: int, tasks: int, mode: str) -> tuple[float, float]:
    async with AsyncClient(address) as client:
        await _batch(client, 200, mode)  # warm up
        started, cpu = time.perf_counter(), _cpu_seconds(pid)
        await _batch(client, tasks, mode)
        elapsed, cpu = time.perf_counter() - started, _cpu_seconds(pid) - cpu
        return tasks / elapsed, cpu / tasks * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_cost")
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mode", choices=("run", "submit"), default="run")
    options = parser.parse_args()
    rates: dict[str, list[float]] = {"memory": [], "sqlite": []}
    cpus: dict[str, list[float]] = {"memory": [], "sqlite": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(options.rounds):
            stores = {"memory": "memory://", "sqlite": f"sqlite:///{tmp}/round{i}.sqlite3"}
            for label, url in stores.items():
                with SupervisorProcess(
                    ["bench.apps"],
                    workers=options.workers,
                    store=url,
                    extra_args=["--log-level", "WARNING"],
                ) as sup:
                    rate, cpu = asyncio.run(
                        _measure(sup.address, sup.pid, options.tasks, options.mode)
                    )
                    store_stats = sup.status()["store"]
                rates[label].append(rate)
                cpus[label].append(cpu)
                print(
                    f"round {i + 1} {label:<7} {rate:7.0f} tasks/s {cpu:5.0f} us CPU/task  "
                    f"store {store_stats}",
                    flush=True,
                )
    memory, sqlite = (statistics.median(rates[k]) for k in ("memory", "sqlite"))
    cpu_memory, cpu_sqlite = (statistics.median(cpus[k]) for k in ("memory", "sqlite"))
    print(
        f"\n{options.tasks} no-op tasks ({options.mode}), {options.workers} workers, median of "
        f"{options.rounds}: memory {memory:.0f}/s ({cpu_memory:.0f} us CPU/task), "
        f"sqlite {sqlite:.0f}/s ({cpu_sqlite:.0f} us CPU/task): "
        f"throughput {(sqlite / memory - 1) * 100:+.0f}%"
    )


if __name__ == "__main__":
    main()
