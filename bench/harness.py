"""``python -m bench``: run the benchmarks, print one table.

Both systems are started once and stay up side by side (idle workers of
either cost nothing measurable), and each benchmark runs its Coda half and
its Celery half back to back, so drift in a shared machine's load touches
both. Extra clusters are started only for the scaling benchmark.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from functools import partial
from typing import TypeVar

from .broker import broker_rows
from .celery_side import CeleryWorker
from .coda_side import CodaCluster
from .echo import EchoServer, round_trips
from .events import make_events
from .fleet import fleet_rows
from .report import Row, machine, table
from .scaling import scaling_rows
from .sizes import PRESETS, Sizes
from .stats import percentile
from .systems import WORKERS, Systems, progress, started

__all__ = ["BENCHMARKS", "PRESETS", "Sizes", "main", "run"]

_T = TypeVar("_T")

BENCHMARKS = ("noop", "chain", "rerun", "latency", "scaling", "broker", "fleet")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


def _ms(seconds: float) -> float:
    return seconds * 1000


def _us(seconds: float) -> float:
    return seconds * 1_000_000


ROUNDS = 2  # each throughput pair alternates Coda, Celery, Coda, Celery


@dataclass
class _Tally:
    """Items, seconds and CPU seconds added up over alternating rounds.

    Server CPU is the supervisor and its workers, or the Celery worker, its
    pool and redis-server; client CPU is this process.
    """

    items: int = 0
    seconds: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0

    def add(
        self, measure: Callable[[], float], server_cpu: Callable[[], float], items: int
    ) -> None:
        server, client = server_cpu(), time.process_time()
        per_second = measure()
        self.server_cpu += server_cpu() - server
        self.client_cpu += time.process_time() - client
        self.items += items
        self.seconds += items / per_second

    @property
    def rate(self) -> float:
        return self.items / self.seconds


def _side_by_side(
    systems: Systems,
    items: Sequence[_T],
    coda_measure: Callable[[CodaCluster, Sequence[_T]], float],
    celery_measure: Callable[[CeleryWorker, Sequence[_T]], float],
) -> tuple[_Tally, _Tally | None]:
    """Measure both systems on ``items``, split into alternating rounds so
    that a burst of load from elsewhere lands on both, not on one."""
    coda, celery = _Tally(), None if systems.celery is None else _Tally()
    for index in range(ROUNDS):
        chunk = items[index::ROUNDS]
        if not chunk:
            continue
        coda.add(partial(coda_measure, systems.coda, chunk), systems.coda.cpu_seconds, len(chunk))
        if celery is not None and systems.celery is not None:
            worker = systems.celery
            celery.add(partial(celery_measure, worker, chunk), worker.cpu_seconds, len(chunk))
    return coda, celery


def _throughput_rows(name: str, what: str, coda: _Tally, celery: _Tally | None) -> list[Row]:
    rows = [
        Row(
            name,
            "throughput",
            coda.rate,
            "/s",
            None if celery is None else celery.rate,
            goal=10,
            target="≥ 10x Celery",
        )
    ]
    for side in ("server", "client"):
        rows.append(
            Row(
                f"{what}: {side} CPU per item",
                "cost",
                _us(getattr(coda, f"{side}_cpu") / coda.items),
                "µs",
                None if celery is None else _us(getattr(celery, f"{side}_cpu") / celery.items),
            )
        )
    return rows


def _noop(systems: Systems, sizes: Sizes) -> list[Row]:
    n = sizes.noop
    progress(f"no-op round trips: {n} in flight, then {sizes.sequential} one by one")
    coda, celery = _side_by_side(
        systems,
        range(n),
        lambda cluster, chunk: cluster.noop_throughput(len(chunk)),
        lambda worker, chunk: worker.noop_throughput(len(chunk)),
    )
    coda_seq = systems.coda.sequential(sizes.sequential)
    celery_seq = None if systems.celery is None else systems.celery.sequential(sizes.sequential)
    return [
        *_throughput_rows(
            f"no-op tasks, {ROUNDS} x {n // ROUNDS} in flight, {WORKERS} workers",
            "no-op",
            coda,
            celery,
        ),
        *(
            Row(
                f"no-op round trip p{q}, one at a time (blocking client)",
                "latency",
                _ms(percentile(coda_seq, q)),
                "ms",
                None if celery_seq is None else _ms(percentile(celery_seq, q)),
            )
            for q in (50, 99)
        ),
    ]


def _chain(systems: Systems, sizes: Sizes) -> list[Row]:
    rows = []
    for size in sizes.payloads:
        progress(f"3-step chain: {sizes.chain} events of {size // 1024} KB")
        coda, celery = _side_by_side(
            systems,
            make_events(sizes.chain, size),
            CodaCluster.chain_throughput,
            CeleryWorker.chain_throughput,
        )
        kb = size // 1024
        name = f"3-step workflow vs chain, {kb} KB events, {ROUNDS} x {sizes.chain // ROUNDS}"
        rows += _throughput_rows(name, f"{kb} KB chains", coda, celery)
    return rows


def _rerun(systems: Systems, sizes: Sizes) -> list[Row]:
    steps = sizes.rerun_steps
    progress(f"cached rerun: {steps} steps, {sizes.rerun_repeats} times")
    first, rerun = systems.coda.rerun(steps, sizes.rerun_repeats)
    _, gathered = systems.coda.rerun(steps, sizes.rerun_repeats, gather=True)
    median = statistics.median
    return [
        Row(
            f"cached rerun of {steps} steps, awaited one by one (median)",
            "absolute",
            _ms(median(rerun)),
            "ms",
            goal=20 if steps == 100 else None,
            target="< 20 ms",
        ),
        Row(
            f"cached rerun of {steps} steps, gathered (median)",
            "absolute",
            _ms(median(gathered)),
            "ms",
        ),
        Row(
            f"first run of {steps} steps, one by one (median)", "absolute", _ms(median(first)), "ms"
        ),
    ]


def _latency(systems: Systems, sizes: Sizes) -> list[Row]:
    progress(f"latency: {sizes.latency_samples} spawns and cache hits; floor {sizes.floor_samples}")
    probe = systems.coda.latency(sizes.latency_samples)
    with EchoServer() as echo:
        floor = round_trips(echo.path, sizes.floor_samples)
    rows = []
    for name, key, goal in (
        ("no-op spawn_task", "spawn", 4),
        ("async no-op spawn_task", "spawn_async", None),
        ("cache hit", "hit", 2),
    ):
        for q in (50, 99):
            rows.append(
                Row(
                    f"{name} from a workflow, p{q}",
                    "latency",
                    _us(percentile(probe[key], q)),
                    "µs",
                    _us(percentile(floor, q)),
                    baseline_label="floor",
                    goal=goal if q == 50 else None,
                    target=f"≤ {goal}x floor" if q == 50 and goal else "",
                )
            )
    return rows


def run(
    sizes: Sizes,
    only: Sequence[str],
    redis_url: str,
    with_celery: bool = True,
    coda_args: Sequence[str] = (),
) -> list[Row]:
    """Run the chosen benchmarks; return the table's rows."""
    rows: list[Row] = []
    with_celery = with_celery and any(name in only for name in ("noop", "chain", "scaling"))
    if any(name not in ("broker", "fleet") for name in only):
        with started(with_celery, redis_url, coda_args) as systems:
            if "noop" in only:
                rows += _noop(systems, sizes)
            if "chain" in only:
                rows += _chain(systems, sizes)
            if "rerun" in only:
                rows += _rerun(systems, sizes)
            if "latency" in only:
                rows += _latency(systems, sizes)
            if "scaling" in only:
                rows += scaling_rows(systems, sizes)
    if "fleet" in only:  # its own supervisors: one on SQLite, fleets on PostgreSQL
        rows += fleet_rows(sizes)
    if "broker" in only:  # its own supervisors, durable and in-memory
        rows += broker_rows(sizes)
    return rows


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--size", choices=sorted(PRESETS), default="default")
    parser.add_argument("--quick", action="store_const", const="quick", dest="size")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    parser.add_argument("-n", "--tasks", type=int, help="override the no-op task count")
    parser.add_argument(
        "--redis-url", default=os.environ.get("CODA_BENCH_REDIS_URL", DEFAULT_REDIS_URL)
    )
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    parser.add_argument(
        "--coda-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the 2-worker `coda supervisor`, e.g. --coda-arg=--concurrency=4",
    )
    parser.add_argument(
        "--skip-celery", action="store_true", help="Coda figures only (no ratios), for quick A/B"
    )
    options = parser.parse_args(argv)
    unknown = set(options.only.split(",")) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(sorted(unknown))}")
    return options


def main(argv: Sequence[str] | None = None) -> list[Row]:
    args = list(sys.argv[1:] if argv is None else argv)
    options = parse(args)
    sizes = PRESETS[options.size]
    if options.tasks:
        sizes = replace(sizes, noop=options.tasks)
    started = time.perf_counter()
    rows = run(
        sizes,
        options.only.split(","),
        options.redis_url,
        with_celery=not options.skip_celery,
        coda_args=options.coda_arg,
    )
    print(machine(options.redis_url, " ".join(["python -m bench", *args])))
    print(f"- sizes ({options.size}): {sizes}")
    print(f"- wall time: {time.perf_counter() - started:.0f} s\n")
    print(table(rows))
    print(
        "\nratio: throughput rows Coda ÷ Celery (higher is better); latency rows Coda ÷ "
        "baseline, and cost rows (memory, CPU per task) Coda ÷ Celery (lower is better)."
    )
    if options.json:
        with open(options.json, "w") as out:
            json.dump([{**asdict(r), "ratio": r.ratio, "met": r.met} for r in rows], out, indent=1)
    return rows
