"""Reading a Prometheus exposition in tests, with prometheus_client's own
parser: every sample by name and labels, and the per-name outcome counters."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

__all__ = ["OUTCOMES", "Samples", "counted", "parse", "value"]

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
OUTCOMES = ("started", "succeeded", "failed", "retried", "cancelled", "requeued", "cache_hits")


def parse(text: str) -> Samples:
    """Every sample of the exposition, by name and labels."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def value(samples: Samples, sample: str, **labels: str) -> float:
    return samples[sample, tuple(sorted(labels.items()))]


def counted(samples: Samples, prefix: str, name: str) -> dict[str, float]:
    """Each outcome's count for ``name`` (``prefix``: tasks or runs)."""
    return {what: value(samples, f"coda_{prefix}_{what}_total", name=name) for what in OUTCOMES}
