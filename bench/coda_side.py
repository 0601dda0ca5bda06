"""Run the Coda side of the benchmarks against a real supervisor process.

``CodaCluster`` is ``coda supervisor -A bench.apps --workers N`` started with
``coda.testing.SupervisorProcess``; its methods are the measurements. Many
runs in flight go through one ``AsyncClient``; one-at-a-time round trips go
through the blocking ``Client``, and so does the submit loop (``submit`` N
times, then each handle's ``result()``: how a script or a web view calls it).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import coda
from coda.testing import SupervisorProcess, wait_until

from . import apps
from .stats import cpu_seconds, process_cpu_seconds, rate, rss_bytes

__all__ = ["CodaCluster"]

RESULT_TIMEOUT = 600.0
REPO_ROOT = Path(__file__).resolve().parent.parent


class CodaCluster:
    """A supervisor with ``workers`` worker processes, warm and ready."""

    def __init__(self, workers: int, extra_args: Sequence[str] = ()) -> None:
        pythonpath = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        self.workers = workers
        self.supervisor = SupervisorProcess(
            ["bench.apps"],
            workers=workers,
            extra_args=["--log-level", "WARNING", *extra_args],
            env={"PYTHONPATH": pythonpath},
        )
        self.address = self.supervisor.address
        try:
            wait_until(
                lambda: len(self.supervisor.status()["workers"]) == workers,
                timeout=60,
                what=f"{workers} workers to join",
            )
        except BaseException:
            self.supervisor.close()
            raise

    @property
    def pid(self) -> int:
        return self.supervisor.pid

    def cpu_seconds(self) -> float:
        """CPU time of the supervisor and its workers (its session), so far."""
        return cpu_seconds(self.supervisor.pid)

    def supervisor_cpu_seconds(self) -> float:
        """CPU time of the supervisor process alone (all its threads, none of
        its workers), so far."""
        return process_cpu_seconds(self.supervisor.pid)

    def close(self) -> None:
        self.supervisor.close()

    def __enter__(self) -> CodaCluster:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- benchmarks -------------------------------------------------------

    def noop_throughput(self, count: int) -> float:
        """``count`` no-op tasks in flight at once over one AsyncClient: round trips/s."""
        return asyncio.run(self._many(apps.noop, [{}] * count))

    def sequential(self, count: int) -> list[float]:
        """Seconds per blocking ``Client.run(noop)``, one at a time."""
        samples = []
        with coda.Client(self.address) as client:
            client.run(apps.noop, timeout=RESULT_TIMEOUT)  # connect and warm up
            for _ in range(count):
                started = time.perf_counter()
                client.run(apps.noop, timeout=RESULT_TIMEOUT)
                samples.append(time.perf_counter() - started)
        return samples

    def blocking_submits(self, count: int) -> list[float]:
        """Seconds per blocking ``Client.submit(noop)`` (until it is accepted:
        durable), one after the other; the tasks run meanwhile."""
        samples = []
        with coda.Client(self.address) as client:
            client.submit(apps.noop).result(timeout=RESULT_TIMEOUT)  # connect and warm up
            handles = []
            for _ in range(count):
                started = time.perf_counter()
                handles.append(client.submit(apps.noop))
                samples.append(time.perf_counter() - started)
            for handle in handles:
                handle.result(timeout=RESULT_TIMEOUT)
        return samples

    def noop_submit_loop(self, count: int) -> float:
        """``Client.submit(noop)`` ``count`` times, then each ``result()``: runs/s."""
        return self._submit_loop(apps.noop, [{}] * count)

    def chain_submit_loop(self, events: Sequence[dict[str, Any]]) -> float:
        """The 3-step ``ingest`` workflow through the blocking submit loop: events/s."""
        return self._submit_loop(apps.ingest, [{"event": event} for event in events])

    def _submit_loop(self, target: object, arguments: Sequence[dict[str, Any]]) -> float:
        with coda.Client(self.address) as client:
            client.run(target, arguments[0], timeout=RESULT_TIMEOUT)  # connect and warm up
            started = time.perf_counter()
            handles = [client.submit(target, args) for args in arguments]
            for handle in handles:
                handle.result(timeout=RESULT_TIMEOUT)
            return rate(len(arguments), time.perf_counter() - started)

    def rerun_end_to_end(self, steps: int, repeats: int) -> list[float]:
        """Seconds from a run's first attempt failing (after ``steps`` cached
        steps) to the client holding the result of its cached rerun
        (``apps.rerun_timed``), ``repeats`` times."""
        samples = []
        with coda.Client(self.address) as client:
            for _ in range(repeats):
                failed_at = float(client.run(apps.rerun_timed, {"steps": steps}, timeout=600))
                samples.append(time.time() - failed_at)
        return samples

    def chain_throughput(self, events: Sequence[dict[str, Any]]) -> float:
        """Events/s through the 3-step ``ingest`` workflow, all in flight."""
        return asyncio.run(self._many(apps.ingest, [{"event": event} for event in events]))

    def rerun(
        self, steps: int, repeats: int, gather: bool = False
    ) -> tuple[list[float], list[float]]:
        """(first-run seconds, cached-rerun seconds), ``repeats`` of each,
        both measured inside the workflow."""
        first, rerun = [], []
        with coda.Client(self.address) as client:
            for _ in range(repeats):
                args = {"steps": steps, "fail_first": False, "gather": gather}
                first.append(float(client.run(apps.rerun_steps, args, timeout=RESULT_TIMEOUT)))
                args["fail_first"] = True
                rerun.append(float(client.run(apps.rerun_steps, args, timeout=RESULT_TIMEOUT)))
        return first, rerun

    def latency(self, samples: int) -> dict[str, list[float]]:
        """Seconds per no-op spawn and per cache hit, from inside a workflow."""
        with coda.Client(self.address) as client:
            client.run(apps.latency_probe, {"samples": 10}, timeout=RESULT_TIMEOUT)  # warm up
            result = client.run(apps.latency_probe, {"samples": samples}, timeout=RESULT_TIMEOUT)
        return {name: [float(x) for x in values] for name, values in result.items()}

    async def _many(self, target: object, arguments: Sequence[dict[str, Any]]) -> float:
        async with coda.AsyncClient(self.address) as client:
            await client.run(target, arguments[0], timeout=RESULT_TIMEOUT)  # warm up
            started = time.perf_counter()
            await asyncio.gather(
                *(client.run(target, args, timeout=RESULT_TIMEOUT) for args in arguments)
            )
            return rate(len(arguments), time.perf_counter() - started)


WARMUP = 1000  # tasks queued before the baseline, so one-off growth is not charged per task
PARKED = "bench-parked"  # a queue no worker consumes


def queued_memory(cluster: CodaCluster, levels: Sequence[int]) -> list[tuple[int, float, float]]:
    """Per level: (queued, accept rate, supervisor RSS growth per queued task).

    Tasks go to a queue no worker consumes, submitted in batches that each
    wait for their Accepted. The baseline RSS is read after ``WARMUP`` tasks
    are already queued: the first burst grows buffers and allocator arenas
    once, and that is not a per-task cost. ``queued`` counts tasks beyond it.
    """
    return asyncio.run(_queue_up(cluster, levels))


async def _submit(client: coda.AsyncClient, count: int) -> None:
    while count > 0:
        batch = min(5000, count)
        await asyncio.gather(*(client.submit(apps.noop, queue=PARKED) for _ in range(batch)))
        count -= batch


async def _queue_up(cluster: CodaCluster, levels: Sequence[int]) -> list[tuple[int, float, float]]:
    rows: list[tuple[int, float, float]] = []
    async with coda.AsyncClient(cluster.address) as client:
        await _submit(client, WARMUP)
        base = rss_bytes(cluster.pid)
        queued = 0
        for level in levels:
            started = time.perf_counter()
            await _submit(client, level - queued)
            accept_rate = rate(level - queued, time.perf_counter() - started)
            queued = level
            rows.append((queued, accept_rate, (rss_bytes(cluster.pid) - base) / queued))
    return rows
