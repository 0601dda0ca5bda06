"""Prometheus metrics of one supervisor: what its engine did, and holds now.

Counters are the engine's own counts (``Jobs.counts``, the numbers ``coda
status`` shows), read at scrape time: nothing is added to a job's path for
them. Gauges (queue depths, live jobs, workers) are read from the engine's
live state at scrape time too. Durations and commit latencies are observed
as they happen, into histograms, through the engine's ``Jobs.on_end`` and
the store's ``observe_commits``. With ``--http`` they are served at
``/metrics`` by the dashboard's server, behind its access rules.

Families (``runs`` are workflow runs, top-level or spawned; ``tasks`` are
tasks, submitted or spawned), each labelled ``name``:

- ``coda_runs_*_total`` and ``coda_tasks_*_total`` for ``started`` (attempts
  begun on a worker: a retried task starts once per attempt), ``succeeded``,
  ``failed``, ``retried``, ``cancelled``, ``requeued`` and ``cache_hits``
  (spawns answered from a step's recorded job instead of running it);
- ``coda_run_duration_seconds`` and ``coda_task_duration_seconds``: for each
  job that ended, how long its last attempt ran on its worker (a job that
  ended without starting, cancelled in its queue, is not observed).

Without a name: ``coda_queue_depth{queue,kind}`` (jobs ready, waiting for a
worker), ``coda_jobs{kind,state}`` (live jobs queued, delayed for a retry
or an ETA, running), ``coda_workers``, ``coda_worker_restarts_total``,
``coda_store_commit_seconds`` (from the hand-off of a batch to its commit
settled: what an acknowledgement waits for), ``coda_store_commit_failures_total``,
and prometheus_client's ``process_*``.

Labels stay bounded: a name is its own label if it is registered in this
supervisor, and ``(unregistered)`` otherwise (a job recovered from the store
after its code was removed); past ``MAX_QUEUES`` queues, the rest are summed
under ``(other)``.

Every supervisor has a registry of its own, not prometheus_client's global
one: several may live in one process (tests), and a scrape shows one. The
collector reads the engine's state unguarded: scrape on the engine's thread
(the event loop), as an async handler does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..errors import CodaError
from ..messages import Kind
from .engine import Engine
from .histograms import Buckets, HistogramCollector
from .jobs import Job, JobState
from .peers import NameInfo

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

__all__ = ["CONTENT_TYPE", "MAX_QUEUES", "OTHER", "UNREGISTERED", "Metrics"]

# The text format every Prometheus reads (what generate_latest writes for
# names like these; prometheus_client's "latest" is 1.0.0, which older
# servers do not know).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNREGISTERED = "(unregistered)"
OTHER = "(other)"
MAX_QUEUES = 100

PREFIXES: dict[Kind, str] = {"workflow": "runs", "task": "tasks"}
COUNTED = {
    "started": "attempts begun on a worker",
    "succeeded": "ended with a result",
    "failed": "ended with a failure",
    "retried": "attempts that failed and were scheduled again (retry_on, self.retry)",
    "cancelled": "ended cancelled",
    "requeued": "deliveries given back to the queue (Celery's Reject(requeue=True))",
    "cache_hits": "spawns answered from a step already recorded under its cache key",
}
LIVE_STATES = (JobState.QUEUED, JobState.DELAYED, JobState.RUNNING)
DURATION_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, float("inf")),
)
COMMIT_BUCKETS = (
    *(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
    *(0.25, 0.5, 1.0, 2.5, 5.0, 10.0, float("inf")),
)


class Metrics:
    """The metrics of one engine (and its store and worker pool)."""

    def __init__(
        self,
        engine: Engine,
        lookup: Callable[[str], NameInfo],
        *,
        restarts: Callable[[], int] = lambda: 0,
    ) -> None:
        self.registry = CollectorRegistry()
        self._names = _Labels(lookup)
        self._durations = {
            kind: HistogramCollector(
                f"coda_{kind if kind == 'task' else 'run'}_duration_seconds",
                f"How long the last attempt of each {PREFIXES[kind][:-1]} that ended ran",
                DURATION_BUCKETS,
                label="name",
            )
            for kind in PREFIXES
        }
        self._commit_seconds = HistogramCollector(
            "coda_store_commit_seconds",
            "Store commits, from the hand-off of a batch to its commit settled",
            COMMIT_BUCKETS,
        )
        for histogram in (*self._durations.values(), self._commit_seconds):
            self.registry.register(histogram)
        self._commits = self._commit_seconds.series()
        self._commit_failures = PromCounter(
            "coda_store_commit_failures", "Store commits that failed", registry=self.registry
        )
        self._observers: dict[tuple[Kind, str], Buckets] = {}
        self.registry.register(_EngineCollector(engine, self._names, restarts))
        ProcessCollector(registry=self.registry)
        engine.jobs.on_end = self._ended
        engine.store.observe_commits(self._committed)

    def exposition(self) -> bytes:
        """The text format a scrape gets (``CONTENT_TYPE``); on the engine's thread."""
        return generate_latest(self.registry)

    def route(self) -> BaseRoute:
        """``GET /metrics`` for the dashboard's app (``--http``): an async
        handler, so the scrape runs on the loop, the engine's thread."""
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        async def scrape(request: Request) -> Response:
            return Response(self.exposition(), media_type=CONTENT_TYPE)

        return Route("/metrics", scrape, methods=["GET"])

    def _ended(self, job: Job, runtime: float | None) -> None:
        if runtime is None:
            return
        key = (job.kind, self._names.label(job.name))
        observer = self._observers.get(key)
        if observer is None:
            observer = self._observers[key] = self._durations[job.kind].series(key[1])
        observer.observe(max(runtime, 0.0))

    def _committed(self, seconds: float, succeeded: bool) -> None:
        if succeeded:
            self._commits.observe(seconds)
        else:
            self._commit_failures.inc()


class _Labels:
    """The label of a name: itself if registered here, else ``UNREGISTERED``."""

    def __init__(self, lookup: Callable[[str], NameInfo]) -> None:
        self._lookup = lookup
        self._registered: set[str] = set()

    def label(self, name: str) -> str:
        if name in self._registered:
            return name
        try:
            self._lookup(name)
        except CodaError:
            return UNREGISTERED
        self._registered.add(name)
        return name


class _EngineCollector(Collector):
    """Counters and gauges read from the engine at scrape time."""

    def __init__(self, engine: Engine, names: _Labels, restarts: Callable[[], int]) -> None:
        self._engine = engine
        self._names = names
        self._restarts = restarts

    def collect(self) -> Iterable[Metric]:
        yield from self._counters()
        yield from self._live()
        workers = GaugeMetricFamily("coda_workers", "Worker processes connected")
        workers.add_metric([], len(self._engine.dispatch.workers))
        yield workers
        restarts = CounterMetricFamily("coda_worker_restarts", "Worker processes replaced")
        restarts.add_metric([], self._restarts())
        yield restarts

    def _counters(self) -> Iterator[Metric]:
        totals: dict[tuple[Kind, str], Counter[str]] = {}
        kinds = self._engine.jobs.kinds
        for name, counts in self._engine.counts.items():
            key = (kinds[name], self._names.label(name))
            totals.setdefault(key, Counter()).update(counts)
        for kind, prefix in PREFIXES.items():
            for what, help_text in COUNTED.items():
                family = CounterMetricFamily(
                    f"coda_{prefix}_{what}", f"{prefix.capitalize()}: {help_text}", labels=["name"]
                )
                for (of_kind, label), counts in sorted(totals.items()):
                    if of_kind == kind:
                        family.add_metric([label], counts[what])
                yield family

    def _live(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(
            "coda_queue_depth",
            "Jobs ready and waiting for a worker, per queue",
            labels=["queue", "kind"],
        )
        depths: Counter[tuple[str, str]] = Counter()
        for index, (queue, counts) in enumerate(sorted(self._engine.dispatch.queued().items())):
            label = queue if index < MAX_QUEUES else OTHER
            for kind in PREFIXES:
                depths[label, kind] += counts[f"{kind}s"]
        for labels, count in depths.items():
            depth.add_metric(list(labels), count)
        yield depth
        jobs = GaugeMetricFamily(
            "coda_jobs", "Live jobs by kind and state", labels=["kind", "state"]
        )
        states = Counter((job.kind, job.state) for job in self._engine.live.values())
        for kind in PREFIXES:
            for state in LIVE_STATES:
                jobs.add_metric([kind, state.value], states[kind, state])
        yield jobs
