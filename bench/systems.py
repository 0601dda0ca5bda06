"""The systems under test, started once for the whole run, side by side.

Coda: a supervisor on the default SQLite store and, for the rows that weigh
the durable store, a second one on ``memory://``. Celery: one worker per
configuration (``CELERY_CONFIGS``: Redis or RabbitMQ as broker, json or
msgpack as serializer; results in Redis). Idle workers of either cost
nothing measurable. Everything starts at once (each start waits mostly on
imports), so adding contenders adds little to the run's wall time.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from .celery_app import CeleryConfig
from .celery_side import CeleryRun, CeleryWorker
from .coda_side import CodaCluster

__all__ = ["CELERY_CONFIGS", "WORKERS", "Systems", "progress", "started"]

WORKERS = 2  # the comparison's worker processes (Coda) and prefork concurrency (Celery)
CELERY_CONFIGS = tuple(
    CeleryConfig(broker, serializer)
    for broker in ("redis", "rabbitmq")
    for serializer in ("json", "msgpack")
)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Systems:
    coda: CodaCluster
    coda_memory: CodaCluster | None  # the same on memory://, when a row needs it
    celery: list[CeleryWorker]  # one per configuration, CELERY_CONFIGS' order
    fastest_celery: str | None = None  # the label that won the no-op row, once run

    @property
    def celery_runs(self) -> list[CeleryRun]:
        return [worker.run for worker in self.celery]

    def celery_run(self, label: str | None = None) -> CeleryRun | None:
        """The configuration of that label; by default the one that won the
        no-op row, else Redis with json (Celery's defaults)."""
        wanted = label or self.fastest_celery or CeleryConfig("redis", "json").label
        for run in self.celery_runs:
            if run.label == wanted:
                return run
        return None


@contextmanager
def started(
    with_celery: bool,
    redis_url: str,
    rabbitmq_url: str,
    coda_args: Sequence[str],
    with_memory: bool,
    configs: Sequence[CeleryConfig] = CELERY_CONFIGS,
) -> Iterator[Systems]:
    with ExitStack() as stack, ThreadPoolExecutor(4) as starter:
        progress(f"starting a Coda supervisor with {WORKERS} workers {' '.join(coda_args)}")
        coda = starter.submit(CodaCluster, WORKERS, coda_args)
        memory = None
        if with_memory:
            progress(f"starting a Coda supervisor with {WORKERS} workers on memory://")
            memory_args = [*coda_args, "--store", "memory://"]
            memory = starter.submit(CodaCluster, WORKERS, memory_args)
        workers: list[CeleryWorker] = []
        if with_celery:
            for config in configs:
                progress(f"starting a {config.label} worker, prefork -c {WORKERS}")
                run = stack.enter_context(CeleryRun(config, redis_url, rabbitmq_url))
                workers.append(stack.enter_context(run.worker(WORKERS)))
        readied = [starter.submit(worker.wait_ready) for worker in workers]
        clusters = [stack.enter_context(coda.result())]
        if memory is not None:
            clusters.append(stack.enter_context(memory.result()))
        for ready in readied:
            ready.result()
        yield Systems(clusters[0], clusters[1] if memory is not None else None, workers)
