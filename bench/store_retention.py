"""Does the SQLite store stay bounded under steady load? Watch it.

``python -m bench.store_retention [--seconds 60] [--ttl 2] [--concurrency 32]``

Runs the ``bench.apps.ingest`` workflow (a run and three cache-keyed tasks:
four jobs and three cache entries per run) back to back from one
``AsyncClient`` for ``--seconds``, with ``--result-ttl`` set to ``--ttl``,
and prints the store's figures every few seconds: rows in ``jobs`` and
``cache``, and the size of the file plus its WAL. With expiry working, rows
level off near rate x (TTL + the expiry interval) x 4 and the file stops
growing (SQLite reuses the pages of deleted rows); without it they would
grow linearly with the runs completed.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import tempfile
import time

from coda import AsyncClient
from coda.testing import SupervisorProcess

INGEST = "bench.apps.ingest"


async def _load(client: AsyncClient, deadline: float, runs: itertools.count[int]) -> None:
    while time.monotonic() < deadline:
        event = {"event_id": f"e{next(runs)}", "frames": [{"f": "main.py", "l": 1}] * 8}
        await client.run(INGEST, args={"event": event}, timeout=60)


async def _watch(address: str, seconds: float, concurrency: int, every: float) -> None:
    async with AsyncClient(address) as client:
        started = time.monotonic()
        deadline = started + seconds
        runs = itertools.count()
        loaders = [asyncio.create_task(_load(client, deadline, runs)) for _ in range(concurrency)]
        print(f"{'t (s)':>6} {'runs':>8} {'jobs':>8} {'cache':>8} {'file KiB':>9} {'WAL KiB':>8}")
        while not all(task.done() for task in loaders):
            await asyncio.sleep(every)
            store = (await client.status())["store"]
            print(
                f"{time.monotonic() - started:6.0f} {_peek(runs):8d} {store['jobs']:8d} "
                f"{store['cache_entries']:8d} {store['file_bytes'] // 1024:9d} "
                f"{store['wal_bytes'] // 1024:8d}",
                flush=True,
            )
        total = _peek(runs)
        print(f"\n{total} runs ({total / seconds:.0f}/s) in {seconds:.0f}s")


def _peek(counter: itertools.count[int]) -> int:
    """How many values ``counter`` has handed out (its repr shows the next)."""
    return int(repr(counter)[len("count(") : -1])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.store_retention")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--ttl", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--every", type=float, default=5.0)
    options = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as tmp,
        SupervisorProcess(
            ["bench.apps"],
            workers=options.workers,
            store=f"sqlite:///{tmp}/retention.sqlite3",
            extra_args=["--result-ttl", str(options.ttl), "--log-level", "WARNING"],
        ) as sup,
    ):
        asyncio.run(_watch(sup.address, options.seconds, options.concurrency, options.every))


if __name__ == "__main__":
    main()
