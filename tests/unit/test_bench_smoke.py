"""The benchmark harness still runs end to end, at a toy size.

It starts a real supervisor, a real Celery worker and the echo server, and
checks that every benchmark produced a row with a figure. Timing is never
asserted: this test keeps ``python -m bench`` working, nothing more.
"""

from __future__ import annotations

from dataclasses import replace

from bench.harness import BENCHMARKS, PRESETS, run
from bench.report import table


def test_every_benchmark_yields_rows_at_toy_size(redis_url: str) -> None:
    sizes = replace(PRESETS["quick"], noop=20, chain=5, latency_samples=10, floor_samples=20)

    rows = run(sizes, BENCHMARKS, redis_url)

    names = [row.name for row in rows]
    for fragment in ("no-op tasks", "3-step", "cached rerun", "cache hit", "memory per queued"):
        assert any(fragment in name for name in names), (fragment, names)
    assert all(row.coda > 0 for row in rows)
    throughput = [row for row in rows if row.name.startswith("no-op tasks, 2 x 10 in flight")]
    assert throughput and throughput[0].baseline is not None  # Celery really ran
    assert all(row.met in (True, False, None) for row in rows)
    assert "| benchmark" in table(rows)
