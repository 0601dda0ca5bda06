"""The benchmark harness still runs end to end, at a toy size.

It starts a real supervisor, a real Celery worker and the echo server, and
checks that every benchmark produced a row with a figure. Timing is never
asserted: this test keeps ``python -m bench`` working, nothing more.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.harness import BENCHMARKS, PRESETS, run
from bench.report import Row, table


@pytest.mark.timeout(600)  # it starts a dozen supervisors and a Celery worker
def test_every_benchmark_yields_rows_at_toy_size(redis_url: str) -> None:
    sizes = replace(PRESETS["quick"], noop=20, chain=5, latency_samples=10, floor_samples=20)

    rows = run(sizes, BENCHMARKS, redis_url)

    names = [row.name for row in rows]
    fragments = (
        "no-op tasks",
        "3-step",
        "cached rerun",
        "cache hit",
        "memory per queued",
        "coda://",
    )
    for fragment in fragments:
        assert any(fragment in name for name in names), (fragment, names)
    # CPU time is read from /proc in clock ticks (10 ms): at this size a CPU
    # row may measure 0; every other figure must be positive
    assert [row.name for row in rows if not row.coda > 0 and "CPU" not in row.name] == []
    assert all(row.coda >= 0 for row in rows)
    blocking = "no-op tasks, 2 x 10, 2 workers, blocking"
    throughput = [row for row in rows if row.name.startswith(blocking)]
    assert throughput and throughput[0].baseline is not None  # Celery really ran
    judged = [row for row in rows if row.goal is not None]
    assert throughput[0] in judged and any(row.name.startswith("cache hit") for row in judged)
    assert all(isinstance(row.met, bool) for row in judged)
    assert all(row.met is None for row in rows if row.goal is None)
    lines = table(rows).splitlines()
    assert lines[0].startswith("| benchmark")
    cells = {cols[0]: cols for cols in (_cells(line) for line in lines[2:])}
    assert list(cells) == names
    assert [cells[row.name][-1] for row in rows] == [_verdict(row.met) for row in rows]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _verdict(met: bool | None) -> str:
    return "—" if met is None else ("yes" if met else "**no**")


@pytest.mark.parametrize(
    ("row", "met"),
    [
        (Row("t", "throughput", 1100.0, "/s", 100.0, goal=10), True),
        (Row("t", "throughput", 900.0, "/s", 100.0, goal=10), False),
        (Row("t", "throughput", 900.0, "/s", None, goal=10), False),  # Celery did not run
        (Row("l", "latency", 150.0, "µs", 100.0, goal=2), True),
        (Row("l", "latency", 250.0, "µs", 100.0, goal=2), False),
        (Row("a", "absolute", 19.0, "ms", goal=20), True),
        (Row("a", "absolute", 21.0, "ms", goal=20), False),
        (Row("i", "cost", 21.0, "µs", 30.0), None),  # no goal: informational
    ],
)
def test_a_rows_verdict_compares_its_figure_with_its_goal(row: Row, met: bool | None) -> None:
    assert row.met is met
