"""Histograms kept on the engine's thread and read at scrape time.

prometheus_client's ``Histogram`` takes a lock for every bucket and sum it
updates, so that any thread may observe. Every observation here happens on
the engine's thread (a job's end, a commit settled) and every scrape runs
there too (the dashboard's handler is async), so a bucket is a plain list
slot: a profile of no-op tasks showed the locked increments at 2% of the
supervisor's CPU.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["Buckets", "HistogramCollector"]


class Buckets:
    """One histogram series: counts per upper bound (the last is +Inf) and the sum."""

    __slots__ = ("_bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value


class HistogramCollector(Collector):
    """A histogram family with one series per label value (or one, unlabelled)."""

    def __init__(self, name: str, documentation: str, bounds: Sequence[float], label: str = ""):
        if not bounds or bounds[-1] != float("inf"):
            raise ValueError("the last bucket of a histogram is +Inf")
        self.name, self.documentation, self.bounds, self.label = name, documentation, bounds, label
        self._series: dict[str, Buckets] = {}
        self._edges = [_edge(bound) for bound in bounds]

    def series(self, label_value: str = "") -> Buckets:
        found = self._series.get(label_value)
        if found is None:
            found = self._series[label_value] = Buckets(self.bounds)
        return found

    def collect(self) -> Iterable[Metric]:
        labels = [self.label] if self.label else []
        family = HistogramMetricFamily(self.name, self.documentation, labels=labels)
        for label_value, series in sorted(self._series.items()):
            cumulative, buckets = 0, []
            for edge, count in zip(self._edges, series.counts, strict=True):
                cumulative += count
                buckets.append((edge, float(cumulative)))
            family.add_metric([label_value] if self.label else [], buckets, series.sum)
        yield family


def _edge(bound: float) -> str:
    """An upper bound as Prometheus writes ``le`` ("0.005", "1.0", "+Inf")."""
    return "+Inf" if bound == float("inf") else repr(float(bound))
