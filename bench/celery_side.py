"""Run Celery 5 + Redis the way the Coda benchmarks need it.

``CeleryRun`` owns one benchmark run's corner of Redis: a unique key prefix
(broker queues, bindings, results and the chain's event keys all live under
it) and a unique queue name, and deletes every key under the prefix at the
end. ``CeleryWorker`` is a real ``celery worker -P prefork`` subprocess in its
own session, stopped by its process group id.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from celery import chain  # type: ignore[import-untyped]
from celery.result import AsyncResult  # type: ignore[import-untyped]

from . import celery_app
from .stats import cpu_seconds, process_cpu_seconds, rate

__all__ = ["CeleryRun", "CeleryWorker"]

RESULT_TIMEOUT = 600.0
WARMUP = 1000  # messages queued before the baseline, as on the Coda side
REPO_ROOT = Path(__file__).resolve().parent.parent


class CeleryRun:
    """A per-run key prefix and queue in Redis, removed by ``cleanup()``."""

    def __init__(self, url: str) -> None:
        tag = os.urandom(4).hex()
        self.url = url
        self.prefix = f"coda-bench-{tag}:"
        self.queue = f"coda-bench-{tag}"
        self.env = {
            celery_app.ENV_URL: url,
            celery_app.ENV_PREFIX: self.prefix,
            celery_app.ENV_QUEUE: self.queue,
        }
        os.environ.update(self.env)  # event_key() in this process uses the prefix too
        celery_app.configure(url, self.prefix, self.queue)
        self.redis = redis.Redis.from_url(url)
        self.redis_pid = int(self.redis.info("server")["process_id"])

    def worker(self, concurrency: int) -> CeleryWorker:
        return CeleryWorker(self, concurrency)

    def cleanup(self) -> int:
        """Delete every key under this run's prefix; return how many."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(self.redis.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(self.redis.delete(*batch))
        return deleted

    def __enter__(self) -> CeleryRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()
        for name in self.env:
            os.environ.pop(name, None)


class CeleryWorker:
    """``celery -A bench.celery_app worker -P prefork -c N`` on this run's queue."""

    def __init__(self, run: CeleryRun, concurrency: int, ready_timeout: float = 60.0) -> None:
        self.run = run
        self.concurrency = concurrency
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"]
        argv += ["-P", "prefork", "-c", str(concurrency), "-Q", run.queue, "-l", "WARNING"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **run.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.stop()
            raise

    def cpu_seconds(self) -> float:
        """CPU time of the worker, its pool and redis-server, so far."""
        return cpu_seconds(self.process.pid) + process_cpu_seconds(self.run.redis_pid)

    def _wait_ready(self, timeout: float) -> None:
        """Round-trip a task per pool process, so both are forked and warm."""
        results = [celery_app.noop.delay() for _ in range(self.concurrency * 2)]
        try:
            for result in results:
                result.get(timeout=timeout)
        except Exception as exc:
            self._log.seek(0)
            output = self._log.read().decode(errors="replace")
            raise RuntimeError(f"celery worker did not start: {exc}\n{output}") from exc

    def stop(self, grace: float = 20.0) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL to the group we created."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray pool children, if any
        self._log.close()

    def __enter__(self) -> CeleryWorker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- benchmarks -------------------------------------------------------

    def noop_throughput(self, count: int) -> float:
        """``delay()`` ``count`` times, then ``.get()`` each: round trips/s."""
        started = time.perf_counter()
        results = [celery_app.noop.delay() for _ in range(count)]
        for result in results:
            result.get(timeout=RESULT_TIMEOUT)
        return rate(count, time.perf_counter() - started)

    def sequential(self, count: int) -> list[float]:
        """Seconds per blocking ``delay().get()``, one at a time."""
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            celery_app.noop.delay().get(timeout=RESULT_TIMEOUT)
            samples.append(time.perf_counter() - started)
        return samples

    def chain_throughput(self, events: Sequence[dict[str, Any]]) -> float:
        """Events/s through preprocess → process → save, via Redis keys."""
        client = self.run.redis
        started = time.perf_counter()
        results: list[AsyncResult] = []
        for event in events:
            key = celery_app.event_key(event["event_id"])
            client.set(key, json.dumps(event))
            steps = chain(celery_app.preprocess.s(key), celery_app.process.s(), celery_app.save.s())
            results.append(steps.apply_async())
        for result in results:
            result.get(timeout=RESULT_TIMEOUT)
        return rate(len(events), time.perf_counter() - started)


def queued_memory(run: CeleryRun, levels: Sequence[int]) -> list[tuple[int, float, float]]:
    """Per level: (queued, publish rate, Redis bytes per queued message).

    Messages go to a queue no worker consumes, with ``ignore_result`` so the
    producer does not subscribe to results that will never come. The memory
    is Redis's ``used_memory`` delta: the broker's cost of holding them,
    measured, as on the Coda side, from a baseline with ``WARMUP`` messages
    already queued.
    """
    parked = f"{run.queue}-parked"
    for _ in range(WARMUP):
        celery_app.noop.apply_async(queue=parked, ignore_result=True)
    base = int(run.redis.info("memory")["used_memory"])
    rows: list[tuple[int, float, float]] = []
    queued = 0
    for level in levels:
        started = time.perf_counter()
        for _ in range(level - queued):
            celery_app.noop.apply_async(queue=parked, ignore_result=True)
        publish_rate = rate(level - queued, time.perf_counter() - started)
        queued = level
        grown = int(run.redis.info("memory")["used_memory"]) - base
        rows.append((queued, publish_rate, grown / queued))
    return rows
