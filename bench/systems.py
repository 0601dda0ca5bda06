"""Both systems under test, started once for the whole run."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

from .celery_side import CeleryRun, CeleryWorker
from .coda_side import CodaCluster

__all__ = ["WORKERS", "Systems", "progress", "started"]

WORKERS = 2  # the comparison's worker processes (Coda) and prefork concurrency (Celery)


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Systems:
    coda: CodaCluster
    celery: CeleryWorker | None
    run: CeleryRun | None


@contextmanager
def started(with_celery: bool, redis_url: str, coda_args: Sequence[str]) -> Iterator[Systems]:
    with ExitStack() as stack:
        progress(f"starting a Coda supervisor with {WORKERS} workers {' '.join(coda_args)}")
        coda = stack.enter_context(CodaCluster(WORKERS, coda_args))
        celery_run = celery = None
        if with_celery:
            progress(f"starting a Celery worker, prefork -c {WORKERS}, Redis {redis_url}")
            celery_run = stack.enter_context(CeleryRun(redis_url))
            celery = stack.enter_context(celery_run.worker(WORKERS))
        yield Systems(coda, celery, celery_run)
