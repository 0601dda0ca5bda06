"""The dashboard's read model: rates per name and per queue from the
counters, over the last minute, on a fake clock."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace
from typing import Any

from coda.errors import UnknownNameError
from coda.supervisor.readmodel import ReadModel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def lookup(name: str) -> Any:
    if name == "gone":
        raise UnknownNameError(f"no task or workflow named {name!r}")
    return SimpleNamespace(queue="mail" if name == "send" else "default")


def read_model(counts: dict[str, Counter[str]], clock: Clock) -> ReadModel:
    engine = SimpleNamespace(
        counts=counts,
        dispatch=SimpleNamespace(workers={}),
        queries=SimpleNamespace(list_runs=lambda **filters: []),
        live_jobs=lambda: {},
    )
    status = {"queues": {"default": {"tasks": 3}}, "names": {n: dict(c) for n, c in counts.items()}}
    return ReadModel(engine, lambda: status, lookup, now=clock)  # type: ignore[arg-type]


def test_rates_are_finished_jobs_per_second_over_the_last_minute() -> None:
    clock = Clock()
    counts: dict[str, Counter[str]] = {"send": Counter(succeeded=10), "store": Counter(failed=1)}
    model = read_model(counts, clock)
    first = model.overview()
    assert first["names"]["send"]["rate"] == 0.0  # nothing to compare with yet
    clock.now += 10
    counts["send"]["succeeded"] += 20
    counts["store"]["cancelled"] += 5
    counts["gone"] = Counter(succeeded=50)  # no longer registered: no queue to count it in
    later = model.overview()
    assert later["names"]["send"]["rate"] == 2.0
    assert later["names"]["store"]["rate"] == 0.5
    assert later["queues"] == [
        {"name": "default", "tasks": 3, "workflows": 0, "rate": 0.5},
    ]
    clock.now += 65  # both samples are a minute old or more: measured from the later one
    counts["send"]["succeeded"] += 65
    assert model.overview()["names"]["send"]["rate"] == 1.0
