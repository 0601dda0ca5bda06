"""Benchmark 5: how the supervisor's cost grows with queued work and workers.

Queued tasks go to a supervisor with no workers at all, so nothing drains
them; its RSS growth per task is compared, like for like, with redis-server's
RSS growth per queued Celery message (Celery with Redis as broker and json,
its defaults), at the same queue depths. Worker scaling reruns the no-op round trips with
1, 2, 4 ... workers (on a 2-core machine, more than 2 only adds contention).
"""

from __future__ import annotations

import os

from .celery_app import CeleryConfig
from .celery_side import queued_memory as celery_queued_memory
from .coda_side import CodaCluster
from .coda_side import queued_memory as coda_queued_memory
from .report import Row
from .sizes import Sizes
from .systems import WORKERS, Systems, progress

__all__ = ["scaling_rows"]


def scaling_rows(systems: Systems, sizes: Sizes) -> list[Row]:
    """Queued tasks 1k → 100k (throughput, memory) and workers 1 → N."""
    rows = _queue_rows(systems, sizes)
    coda_rates: dict[int, float] = {}
    celery_rates: dict[int, float] = {}
    run = systems.celery_run()  # the configuration that won the no-op row
    label = "Celery" if run is None else run.label
    for count in sizes.worker_counts:
        progress(f"worker scaling: {sizes.scale_tasks} no-op tasks with {count} workers")
        if count == WORKERS:
            coda_rates[count] = systems.coda.noop_throughput(sizes.scale_tasks)
            for worker in systems.celery:
                if run is not None and worker.run is run:
                    celery_rates[count] = worker.noop_throughput(sizes.scale_tasks)
            continue
        with CodaCluster(count) as cluster:
            coda_rates[count] = cluster.noop_throughput(sizes.scale_tasks)
        if run is not None:
            with run.worker(count) as worker:
                celery_rates[count] = worker.wait_ready().noop_throughput(sizes.scale_tasks)
    cores = len(os.sched_getaffinity(0))
    for count in sizes.worker_counts:
        rows.append(
            Row(
                f"no-op tasks, {count} workers ({cores} cores), {sizes.scale_tasks} in flight",
                "throughput",
                coda_rates[count],
                "/s",
                celery_rates.get(count),
                baseline_label=label,
            )
        )
    return rows


def _queue_rows(systems: Systems, sizes: Sizes) -> list[Row]:
    levels = sizes.queue_levels
    progress(f"queued tasks: {' → '.join(map(str, levels))} on a queue no worker consumes")
    with CodaCluster(0) as cluster:
        coda_rows = coda_queued_memory(cluster, levels)
    celery_rows = {}
    run = systems.celery_run(CeleryConfig("redis", "json").label)
    if run is not None:
        for level, publish_rate, per_task in celery_queued_memory(run, sizes.celery_queue_levels):
            celery_rows[level] = (publish_rate, per_task)
    rows = []
    for level, accept_rate, per_task in coda_rows:
        celery = celery_rows.get(level)
        rows.append(
            Row(
                f"submit rate while the queue grows to {level:,}",
                "throughput",
                accept_rate,
                "/s",
                None if celery is None else celery[0],
                baseline_label="Celery redis/json",
            )
        )
        rows.append(
            Row(
                f"memory per queued task at {level:,} (supervisor RSS vs redis-server RSS)",
                "cost",
                per_task,
                "B",
                None if celery is None else celery[1],
                baseline_label="Celery redis/json",
                goal=1024,
                target="< 1 KB",
            )
        )
    return rows
