"""Run Celery 5 the way the Coda benchmarks need it, in several configurations.

``CeleryRun`` owns one configuration's corner of the brokers: its own
``Celery`` app (``bench.celery_app.make_app``), a unique key prefix in Redis
(broker queues when Redis is the broker, results and the chain's event keys
always) and a unique queue name; ``cleanup()`` deletes every Redis key under
the prefix and, on RabbitMQ, the run's queues. ``CeleryWorker`` is a real
``celery worker -P prefork`` subprocess in its own session, stopped by its
process group id.
"""

from __future__ import annotations

import contextlib
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
from kombu import Connection

from . import celery_app
from .celery_app import CeleryConfig
from .stats import cpu_seconds, process_cpu_seconds, rate, rss_bytes

__all__ = ["DEFAULT_RABBITMQ_URL", "CeleryConfig", "CeleryRun", "CeleryWorker"]

RESULT_TIMEOUT = 600.0
WARMUP = 1000  # messages queued before the baseline, as on the Coda side
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"


class CeleryRun:
    """One Celery configuration: its app, key prefix and queue; ``cleanup()``
    removes what it left in Redis and RabbitMQ."""

    def __init__(self, config: CeleryConfig, redis_url: str, rabbitmq_url: str) -> None:
        tag = os.urandom(4).hex()
        self.config = config
        self.url = redis_url
        self.broker_url = redis_url if config.broker == "redis" else rabbitmq_url
        self.prefix = f"coda-bench-{tag}:"
        self.queue = f"coda-bench-{tag}"
        self.parked = f"{self.queue}-parked"
        self.env = {
            celery_app.ENV_BROKER: self.broker_url,
            celery_app.ENV_URL: redis_url,
            celery_app.ENV_PREFIX: self.prefix,
            celery_app.ENV_QUEUE: self.queue,
            celery_app.ENV_SERIALIZER: config.serializer,
        }
        self.app = celery_app.make_app(
            self.broker_url, redis_url, self.prefix, self.queue, config.serializer
        )
        self.tasks = {name: self.app.tasks[f"bench.{name}"] for name in celery_app.TASKS}
        self.redis = redis.Redis.from_url(redis_url)
        self.redis_pid = int(self.redis.info("server")["process_id"])

    @property
    def label(self) -> str:
        return self.config.label

    def worker(self, concurrency: int) -> CeleryWorker:
        return CeleryWorker(self, concurrency)

    def event_key(self, event_id: str) -> str:
        return celery_app.event_key(self.prefix, event_id)

    def cleanup(self) -> int:
        """Delete every key under this run's prefix (and its RabbitMQ
        queues); return how many keys."""
        deleted = 0
        batch: list[bytes] = []
        for key in self.redis.scan_iter(match=f"{self.prefix}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(self.redis.delete(*batch))
                batch.clear()
        if batch:
            deleted += int(self.redis.delete(*batch))
        if self.config.broker == "rabbitmq":
            with Connection(self.broker_url) as conn, contextlib.suppress(Exception):
                channel = conn.default_channel
                for queue in (self.queue, self.parked):
                    with contextlib.suppress(Exception):
                        channel.queue_delete(queue)
        return deleted

    def close(self) -> None:
        self.cleanup()
        self.app.close()

    def __enter__(self) -> CeleryRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class CeleryWorker:
    """``celery -A bench.celery_app worker -P prefork -c N`` on this run's queue.

    Construct it (the process starts), then ``wait_ready()``; several can
    start side by side that way."""

    def __init__(self, run: CeleryRun, concurrency: int) -> None:
        self.run = run
        self.concurrency = concurrency
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the worker
        argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker"]
        argv += ["-P", "prefork", "-c", str(concurrency), "-Q", run.queue, "-l", "WARNING"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["-n", f"{run.queue}@%h"]  # a node name of its own (RabbitMQ's pidbox queue)
        self.process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env={**os.environ, **run.env},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            start_new_session=True,
        )
        self._broker_pid = _rabbitmq_pid() if run.config.broker == "rabbitmq" else None

    @property
    def label(self) -> str:
        return self.run.label

    def cpu_seconds(self) -> float:
        """CPU time of the worker, its pool, redis-server and (when it is the
        broker) RabbitMQ, so far."""
        total = cpu_seconds(self.process.pid) + process_cpu_seconds(self.run.redis_pid)
        if self._broker_pid is not None:
            total += process_cpu_seconds(self._broker_pid)
        return total

    def wait_ready(self, timeout: float = 60.0) -> CeleryWorker:
        """Round-trip a task per pool process, so both are forked and warm."""
        try:
            results = [self.run.tasks["noop"].delay() for _ in range(self.concurrency * 2)]
            for result in results:
                result.get(timeout=timeout)
        except BaseException as exc:
            self._log.seek(0)
            output = self._log.read().decode(errors="replace")
            self.stop()
            raise RuntimeError(f"{self.label} worker did not start: {exc}\n{output}") from exc
        return self

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
        noop = self.run.tasks["noop"]
        started = time.perf_counter()
        results = [noop.delay() for _ in range(count)]
        for result in results:
            result.get(timeout=RESULT_TIMEOUT)
        return rate(count, time.perf_counter() - started)

    def sequential(self, count: int) -> list[float]:
        """Seconds per blocking ``delay().get()``, one at a time."""
        noop = self.run.tasks["noop"]
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            noop.delay().get(timeout=RESULT_TIMEOUT)
            samples.append(time.perf_counter() - started)
        return samples

    def chain_throughput(self, events: Sequence[dict[str, Any]]) -> float:
        """Events/s through preprocess → process → save, via Redis keys: the
        producer writes each event, then applies its chain; then ``.get()``."""
        client, tasks = self.run.redis, self.run.tasks
        started = time.perf_counter()
        results: list[AsyncResult] = []
        for event in events:
            key = self.run.event_key(event["event_id"])
            client.set(key, celery_app.dump_event(event))
            steps = chain(tasks["preprocess"].s(key), tasks["process"].s(), tasks["save"].s())
            results.append(steps.apply_async())
        for result in results:
            result.get(timeout=RESULT_TIMEOUT)
        return rate(len(events), time.perf_counter() - started)


def _rabbitmq_pid() -> int | None:
    """The RabbitMQ server's process (Erlang's ``beam.smp``), if it runs here."""
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if comm.read_text().strip() == "beam.smp":
                return int(comm.parent.name)
    return None


def queued_memory(run: CeleryRun, levels: Sequence[int]) -> list[tuple[int, float, float]]:
    """Per level: (queued, publish rate, growth of Redis's RSS per queued message).

    Messages go to a queue no worker consumes, with ``ignore_result`` so the
    producer does not subscribe to results that will never come. The memory
    is redis-server's resident set (VmRSS), as on the Coda side the
    supervisor's, measured from a baseline with ``WARMUP`` messages already
    queued. (Redis's own ``used_memory`` counts only what its allocator was
    asked for, not what the process holds: it would flatter Redis.)
    """
    noop = run.tasks["noop"]
    for _ in range(WARMUP):
        noop.apply_async(queue=run.parked, ignore_result=True)
    base = rss_bytes(run.redis_pid)
    rows: list[tuple[int, float, float]] = []
    queued = 0
    for level in levels:
        started = time.perf_counter()
        for _ in range(level - queued):
            noop.apply_async(queue=run.parked, ignore_result=True)
        publish_rate = rate(level - queued, time.perf_counter() - started)
        queued = level
        rows.append((queued, publish_rate, (rss_bytes(run.redis_pid) - base) / queued))
    return rows
