"""Benchmarks 1 and 2: no-op tasks and 3-step workflows, Coda against Celery.

Coda is called the two ways applications call it, on the same supervisor
(default settings, SQLite store):

- the blocking ``coda.Client`` as a script or a web view uses it: ``submit``
  in a loop, then each handle's ``result()`` (every submit returns once it
  is accepted, i.e. committed);
- one ``AsyncClient`` with every run in flight at once.

Celery is called its usual way, ``delay()`` (or ``chain.apply_async()``) in a
loop, then each ``.get()``, in every configuration of ``CELERY_CONFIGS``;
ratios are taken against the fastest of them, and ``baselines_table`` shows
each. All contenders take turns on the same chunks of work (``rounds``).

CPU per item, from ``/proc``: "server" is the supervisor and its workers,
or the Celery worker and its pool plus redis-server (and RabbitMQ when it is
the broker); "supervisor" is the supervisor process alone (all its threads,
its store's commit thread included), which is what one supervisor core must
afford per task; "client" is this process.

The durable store's cost (benchmark 2b): a blocking ``submit`` and a
sequential ``client.run(noop)`` on SQLite against the same on ``memory://``,
alternating between the two supervisors.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import coda

from . import apps
from .celery_side import CeleryWorker
from .coda_side import CodaCluster
from .events import make_events
from .report import Row
from .rounds import ROUNDS, Contender, Tally, alternate
from .sizes import Sizes
from .stats import percentile
from .systems import WORKERS, Systems, progress

__all__ = ["ASYNC", "BLOCKING", "chain_rows", "durable_rows", "noop_rows"]

ASYNC = "Coda AsyncClient"
BLOCKING = "Coda Client"
SUPERVISOR_CPU_GOAL = 60.0  # µs of supervisor CPU per no-op task (issue 16)


def _us(seconds: float) -> float:
    return seconds * 1_000_000


def _coda(
    label: str, cluster: CodaCluster, measure: Callable[[Sequence[Any]], float]
) -> Contender[Any]:
    probes = {"server": cluster.cpu_seconds, "supervisor": cluster.supervisor_cpu_seconds}
    return Contender(label, measure, probes)


def _celery(
    worker: CeleryWorker, measure: Callable[[CeleryWorker, Sequence[Any]], float]
) -> Contender[Any]:
    return Contender(
        worker.label, lambda chunk: measure(worker, chunk), {"server": worker.cpu_seconds}
    )


def _fastest(celery: dict[str, Tally]) -> str | None:
    return max(celery, key=lambda label: celery[label].rate) if celery else None


def _compared(
    name: str, what: str, tallies: dict[str, Tally], celery: list[str], cpu_goal: float | None
) -> list[Row]:
    """Throughput rows of both Coda clients against the fastest Celery, then
    CPU per item."""
    celery_tallies = {label: tallies[label] for label in celery}
    best = _fastest(celery_tallies)
    baseline = None if best is None else celery_tallies[best]
    others = tuple((label, tally.rate) for label, tally in celery_tallies.items())
    rows = [
        Row(
            f"{name}, {how}",
            "throughput",
            tallies[label].rate,
            "/s",
            None if baseline is None else baseline.rate,
            baseline_label=best or "Celery",
            goal=10,
            target="≥ 10x Celery",
            others=others,
        )
        for label, how in (
            (BLOCKING, "blocking Client: submit loop, then result()"),
            (ASYNC, "AsyncClient, all in flight"),
        )
    ]
    for label, client in ((BLOCKING, "blocking Client"), (ASYNC, "AsyncClient")):
        tally = tallies[label]
        for probe, who in (("server", "server"), ("client", "client")):
            theirs = None if baseline is None else baseline.per_item(probe)
            rows.append(
                Row(
                    f"{what} ({client}): {who} CPU per item",
                    "cost",
                    _us(tally.per_item(probe) or 0.0),
                    "µs",
                    None if theirs is None else _us(theirs),
                    baseline_label=best or "Celery",
                )
            )
        rows.append(
            Row(
                f"{what} ({client}): supervisor process CPU per item",
                "cost",
                _us(tally.per_item("supervisor") or 0.0),
                "µs",
                goal=cpu_goal,
                target="" if cpu_goal is None else f"≤ {cpu_goal:.0f} µs",
            )
        )
    return rows


def noop_rows(systems: Systems, sizes: Sizes) -> list[Row]:
    n = sizes.noop
    progress(f"no-op tasks: {n} through each client and Celery configuration, then one by one")
    coda = systems.coda
    contenders = [
        _coda(BLOCKING, coda, lambda chunk: coda.noop_submit_loop(len(chunk))),
        _coda(ASYNC, coda, lambda chunk: coda.noop_throughput(len(chunk))),
        *(_celery(w, lambda w, chunk: w.noop_throughput(len(chunk))) for w in systems.celery),
    ]
    tallies = alternate(contenders, range(n))
    labels = [worker.label for worker in systems.celery]
    name = f"no-op tasks, {ROUNDS} x {n // ROUNDS}, {WORKERS} workers"
    rows = _compared(name, "no-op", tallies, labels, SUPERVISOR_CPU_GOAL)
    systems.fastest_celery = _fastest({label: tallies[label] for label in labels})
    return rows + _sequential_rows(systems, sizes)


def _sequential_rows(systems: Systems, sizes: Sizes) -> list[Row]:
    coda_seq = systems.coda.sequential(sizes.sequential)
    celery_seq = {worker.label: worker.sequential(sizes.sequential) for worker in systems.celery}
    best = min(celery_seq, key=lambda label: percentile(celery_seq[label], 50), default=None)
    return [
        Row(
            f"no-op round trip p{q}, one at a time (blocking Client.run)",
            "latency",
            percentile(coda_seq, q) * 1000,
            "ms",
            None if best is None else percentile(celery_seq[best], q) * 1000,
            baseline_label=best or "Celery",
            others=tuple((label, percentile(s, q) * 1000) for label, s in celery_seq.items()),
        )
        for q in (50, 99)
    ]


def chain_rows(systems: Systems, sizes: Sizes) -> list[Row]:
    rows = []
    coda = systems.coda
    labels = [worker.label for worker in systems.celery]
    for size in sizes.payloads:
        events = make_events(sizes.chain, size)
        label = f"{size} B" if size < 1024 else f"{size // 1024} KB"
        progress(f"3-step workflow against chain: {sizes.chain} events of {label}")
        contenders = [
            _coda(BLOCKING, coda, coda.chain_submit_loop),
            _coda(ASYNC, coda, coda.chain_throughput),
            *(_celery(w, CeleryWorker.chain_throughput) for w in systems.celery),
        ]
        tallies = alternate(contenders, events)
        name = f"3-step workflow vs chain, {label} events, {ROUNDS} x {sizes.chain // ROUNDS}"
        rows += _compared(name, f"{label} chains", tallies, labels, None)
    return rows


def durable_rows(systems: Systems, sizes: Sizes) -> list[Row]:
    """SQLite against memory://: a blocking submit, a sequential run.

    The two supervisors are called in strict alternation, one call to each
    in turn, so that on a busy machine both see the same bursts of load."""
    memory = systems.coda_memory
    assert memory is not None
    count = sizes.sequential
    progress(f"durable store: {count} blocking submits and runs each, SQLite and memory://")
    stores = {"SQLite": systems.coda, "memory://": memory}
    submits = interleaved(stores, count, lambda client: client.submit(apps.noop))
    runs = interleaved(stores, count, lambda client: client.run(apps.noop, timeout=600))
    median = statistics.median
    return [
        Row(
            f"{what}, SQLite store (median of {count})",
            "latency",
            _us(median(samples["SQLite"])),
            "µs",
            _us(median(samples["memory://"])),
            baseline_label="memory://",
            goal=goal,
            target=f"≤ {goal}x memory://",
        )
        for samples, what, goal in (
            (submits, "blocking submit(noop), until accepted", 1.5),
            (runs, "sequential Client.run(noop)", 1.3),
        )
    ]


def interleaved(
    clusters: dict[str, CodaCluster], count: int, call: Callable[[coda.Client], object]
) -> dict[str, list[float]]:
    """Seconds per ``call`` on each cluster's blocking client, one cluster
    after the other, ``count`` times each (after one call each to warm up)."""
    samples: dict[str, list[float]] = {label: [] for label in clusters}
    with contextlib.ExitStack() as stack:
        clients = {
            label: stack.enter_context(coda.Client(cluster.address))
            for label, cluster in clusters.items()
        }
        for client in clients.values():
            call(client)
        for _ in range(count):
            for label, client in clients.items():
                started = time.perf_counter()
                call(client)
                samples[label].append(time.perf_counter() - started)
    return samples
