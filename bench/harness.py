"""``python -m bench``: run the benchmarks, print one table.

Both systems are started once and stay up side by side (idle workers of
either cost nothing measurable), and each benchmark runs its Coda half and
its Celery halves in turns (``bench.rounds``), so drift in a shared
machine's load touches all of them. Extra clusters are started only for the
scaling, broker and fleet benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace

from .broker import broker_rows
from .celery_side import DEFAULT_RABBITMQ_URL
from .echo import EchoServer, round_trips
from .fleet import fleet_rows
from .report import Row, baselines_table, machine, table
from .scaling import scaling_rows
from .sizes import PRESETS, Sizes
from .stats import percentile
from .systems import Systems, progress, started
from .throughput import chain_rows, durable_rows, noop_rows

__all__ = ["BENCHMARKS", "PRESETS", "Sizes", "main", "run"]

BENCHMARKS = ("noop", "durable", "chain", "rerun", "latency", "scaling", "broker", "fleet")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"


def _ms(seconds: float) -> float:
    return seconds * 1000


def _us(seconds: float) -> float:
    return seconds * 1_000_000


def _rerun(systems: Systems, sizes: Sizes) -> list[Row]:
    steps = sizes.rerun_steps
    progress(f"cached rerun: {steps} steps, {sizes.rerun_repeats} times")
    end_to_end = systems.coda.rerun_end_to_end(steps, sizes.rerun_repeats)
    first, rerun = systems.coda.rerun(steps, sizes.rerun_repeats)
    _, gathered = systems.coda.rerun(steps, sizes.rerun_repeats, gather=True)
    median = statistics.median
    return [
        Row(
            f"cached rerun of {steps} steps, end to end: attempt 1 fails → client has "
            "the result (median)",
            "absolute",
            _ms(median(end_to_end)),
            "ms",
            goal=20 if steps == 100 else None,
            target="< 20 ms",
        ),
        Row(
            f"cached rerun of {steps} steps, awaited one by one, inside the workflow (median)",
            "absolute",
            _ms(median(rerun)),
            "ms",
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
    rabbitmq_url: str = DEFAULT_RABBITMQ_URL,
) -> list[Row]:
    """Run the chosen benchmarks; return the table's rows."""
    rows: list[Row] = []
    with_celery = with_celery and any(name in only for name in ("noop", "chain", "scaling"))
    if any(name not in ("broker", "fleet") for name in only):
        with started(
            with_celery, redis_url, rabbitmq_url, coda_args, with_memory="durable" in only
        ) as systems:
            if "noop" in only:
                rows += noop_rows(systems, sizes)
            if "durable" in only:
                rows += durable_rows(systems, sizes)
            if "chain" in only:
                rows += chain_rows(systems, sizes)
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
    parser.add_argument(
        "--rabbitmq-url", default=os.environ.get("CODA_BENCH_RABBITMQ_URL", DEFAULT_RABBITMQ_URL)
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
        rabbitmq_url=options.rabbitmq_url,
    )
    command = " ".join(["python -m bench", *args])
    print(machine(options.redis_url, command, options.rabbitmq_url))
    print(f"- sizes ({options.size}): {sizes}")
    print(f"- wall time: {time.perf_counter() - started:.0f} s\n")
    print(table(rows))
    several = baselines_table(rows)
    if several:
        print("\nThe baseline in each configuration (the table above uses the best):\n")
        print(several)
    print(
        "\nratio: throughput rows Coda ÷ Celery (higher is better); latency rows Coda ÷ "
        "baseline, and cost rows (memory, CPU per task) Coda ÷ Celery (lower is better)."
    )
    if options.json:
        with open(options.json, "w") as out:
            json.dump([{**asdict(r), "ratio": r.ratio, "met": r.met} for r in rows], out, indent=1)
    return rows
