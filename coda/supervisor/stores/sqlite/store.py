"""The SQLite store: the supervisor's state in one embedded, durable file.

Writes: ``save_job`` and ``set_cached`` mark a job or entry dirty; the
commit pipeline (``commits.py``) writes every dirty row of a turn in one
transaction on its own thread, a job changed five times in the turn once,
in its latest state. Which jobs are saved when is the engine's decision
(``coda.supervisor.steps``), not the store's.

Reads see the store's own unwritten changes: ``get_job`` and ``get_cached``
look at the dirty and in-flight maps, then at the recently finished jobs
kept in memory (``recent.py``), then at the file, which they read through a
second connection (WAL lets it read while the commit thread writes).

Retention: ``expire_soon`` deletes expired trees in transactions of
``EXPIRE_BATCH`` root runs queued on the commit thread behind the commits,
so the loop never waits for it and a commit waits for one such batch at
most (measured: 15 ms median, 42 ms max for 400 jobs).

Durability: WAL journal with ``synchronous=NORMAL``. A commit is a
``write()`` to the WAL, without fsync; the WAL is synced when checkpointed.
Committed data therefore survives the death of the supervisor process
(``kill -9``, the OOM killer, a crash), since the pages are in the kernel's
cache; a power loss or kernel crash may roll back the last commits (never
corrupt the file). Process-crash durability is what Coda promises;
``?synchronous=full`` in the store URL adds an fsync per commit.

Leases: a RUNNING job and its worker id *are* the lease. Worker ids belong to
one supervisor generation, so after a restart every RUNNING job is a lease of
the dead generation, and the engine requeues it.
"""

from __future__ import annotations

import functools
import logging
import os
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import cast

from ....errors import ConfigurationError
from ....messages import Payload
from ...clock import Clock
from ...jobs import Job
from ..base import CacheKey, Store
from ..commits import CommitPipeline
from . import retention, schema
from .recent import RecentJobs
from .rows import CACHED_STEPS, Rows, decode_job

__all__ = ["EXPIRE_BATCH", "RECENT_BYTES", "RECENT_JOBS", "SqliteStore"]

log = logging.getLogger("coda.store")

EXPIRE_BATCH = 100  # root runs examined per expiry transaction on the commit thread
RECENT_JOBS = 4096  # finished jobs kept in memory after their commit...
RECENT_BYTES = 16 * 1024 * 1024  # ...holding at most this many bytes

ExpiryResult = tuple[int, int, retention.Cursor | None]


@dataclass(eq=False)
class _Batch:
    """The dirty rows of one flush, on their way to the file."""

    store: SqliteStore
    jobs: dict[str, tuple[Job, bool]]
    cache: dict[CacheKey, str]
    rows: Rows = field(default_factory=Rows)
    # per job, the args written if it was unfinished when encoded (None if
    # finished): the job object may change again before the commit is done
    written: dict[str, Payload | None] = field(default_factory=dict)

    def write(self, db: sqlite3.Connection) -> tuple[int, int]:
        return self.rows.write(db)

    def landed(self, result: object) -> None:
        self.store._landed(self, result)

    def put_back(self) -> None:
        self.store._put_back(self)


class SqliteStore(Store):
    """Jobs and cache entries in a WAL-mode SQLite file, group-committed.

    Without a ``clock`` every change is committed before the call returns
    (scripts, tools, tests that open the file on its own)."""

    def __init__(
        self, path: str, *, synchronous: str = "NORMAL", clock: Clock | None = None
    ) -> None:
        self.path = path
        self._lock_fd = schema.lock(path)
        try:
            schema.check_file(path)
            self._writer = schema.connect(path, synchronous, writer=True)
            self._reader = schema.connect(path, synchronous, writer=False)
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise ConfigurationError(f"cannot open the store {path!r}: {exc}") from exc
        except ConfigurationError:
            os.close(self._lock_fd)
            raise
        self._jobs, self._cache = schema.counts(self._writer)  # then kept up to date
        self._dirty: dict[str, tuple[Job, bool]] = {}
        self._dirty_cache: dict[CacheKey, str] = {}
        self._inflight: _Batch | None = None
        self._written_args: dict[str, Payload] = {}  # unfinished jobs in the file -> their args
        self._recent = RecentJobs(RECENT_JOBS, RECENT_BYTES)
        self._commits: CommitPipeline[sqlite3.Connection] = CommitPipeline(
            self._writer, clock, self._take_batch, lambda: bool(self._dirty or self._dirty_cache)
        )

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> SqliteStore:
        path, synchronous = schema.parse_sqlite_url(url)
        return cls(path, synchronous=synchronous, clock=clock)

    @property
    def commits(self) -> int:
        return self._commits.commits

    @property
    def failed_commits(self) -> int:
        return self._commits.failed_commits

    # -- writes: buffered, then committed by the pipeline ---------------------

    def save_job(self, job: Job, *, with_args: bool = True) -> None:
        if self._refuse_write(f"job {job.id}"):
            return
        self._dirty[job.id] = (job, with_args)
        self._commits.request()

    def set_cached(self, key: CacheKey, job_id: str) -> None:
        if not self._refuse_write(f"the cache entry of job {job_id}"):
            self._dirty_cache[key] = job_id
            self._commits.request()

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._commits.after_commit(callback)

    def flush(self) -> None:
        """Commit everything pending now, blocking until it is durable."""
        self._commits.flush()

    def _refuse_write(self, what: str) -> bool:
        if self._commits.closed:
            log.warning("store closed: %s not saved (its last saved state stands)", what)
        return self._commits.closed

    def _take_batch(self) -> _Batch | None:
        if not (self._dirty or self._dirty_cache):
            return None
        batch = _Batch(self, self._dirty, self._dirty_cache)
        self._dirty, self._dirty_cache = {}, {}
        for job, with_args in batch.jobs.values():
            batch.rows.add_job(job, self._written_args.get(job.id), with_args)
            batch.written[job.id] = None if job.state.finished else job.args
        for key, job_id in batch.cache.items():
            batch.rows.add_cache(key, job_id)
        self._inflight = batch
        return batch

    def _landed(self, batch: _Batch, result: object) -> None:
        self._inflight = None
        new_jobs, new_cache = cast(tuple[int, int], result)  # what Rows.write returned
        self._jobs += new_jobs
        self._cache += new_cache
        for job_id, args in batch.written.items():
            if args is None:
                self._written_args.pop(job_id, None)
            else:
                self._written_args[job_id] = args
        for job, _ in batch.jobs.values():
            if job.state.finished:
                self._recent.add(job)

    def _put_back(self, batch: _Batch) -> None:
        self._inflight = None
        self._dirty = {**batch.jobs, **self._dirty}
        self._dirty_cache = {**batch.cache, **self._dirty_cache}

    # -- reads: pending changes first, then the file ---------------------------

    def get_job(self, job_id: str) -> Job | None:
        job = self._in_memory(job_id)
        if job is not None:
            return job
        row = self._reader.execute("SELECT body, args FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else decode_job(*row)

    def _in_memory(self, job_id: str) -> Job | None:
        """The job's unwritten state, else its recently committed one."""
        entry = self._dirty.get(job_id)
        if entry is None and self._inflight is not None:
            entry = self._inflight.jobs.get(job_id)
        return self._recent.get(job_id) if entry is None else entry[0]

    def get_cached(self, key: CacheKey) -> str | None:
        job_id = self._dirty_cache.get(key)
        if job_id is None and self._inflight is not None:
            job_id = self._inflight.cache.get(key)
        if job_id is not None:
            return job_id
        row = self._reader.execute(
            "SELECT job_id FROM cache WHERE run_id = ? AND name = ? AND key = ?", key
        ).fetchone()
        return None if row is None else str(row[0])

    def cached_steps(self, run_id: str) -> list[tuple[str, bytes, Job]]:
        """The file's entries joined with their jobs in one query; unwritten
        entries and job states are newer, so they win."""
        entries: dict[tuple[str, bytes], str] = {}
        rows: dict[str, tuple[bytes, bytes]] = {}
        for name, key, job_id, body, args in self._reader.execute(CACHED_STEPS, (run_id,)):
            entries[(name, bytes(key))] = job_id
            rows[job_id] = (body, args)
        pending = (
            [self._dirty_cache]
            if self._inflight is None
            else [
                self._inflight.cache,
                self._dirty_cache,
            ]
        )
        for cache in pending:
            entries.update(
                ((name, key), job_id) for (run, name, key), job_id in cache.items() if run == run_id
            )
        steps = []
        for (name, key), job_id in entries.items():
            job = self._in_memory(job_id)
            if job is None:
                row = rows.get(job_id)
                job = decode_job(*row) if row is not None else self.get_job(job_id)
            if job is not None:
                steps.append((name, key, job))
        steps.sort(key=lambda step: step[2].created_at)
        return steps

    def unfinished_jobs(self) -> Iterable[Job]:
        self._commits.flush()
        rows = self._reader.execute(
            "SELECT body, args FROM jobs WHERE finished_at IS NULL ORDER BY created_at"
        ).fetchall()
        jobs = [decode_job(body, args) for body, args in rows]
        for job in jobs:
            self._written_args[job.id] = job.args
        return jobs

    # -- retention -------------------------------------------------------------

    def expire(self, finished_before: float) -> int:
        """Blocks the caller until every expired tree is gone (tools, tests);
        the supervisor uses ``expire_soon``."""
        cursor: retention.Cursor | None = retention.START
        dropped = 0
        while cursor is not None:
            outcome = self._commits.run_blocking(_expiry(finished_before, cursor))
            jobs, cursor = self._expired(outcome)
            dropped += jobs
        return dropped

    def expire_soon(self, finished_before: float, done: Callable[[int], None]) -> None:
        """``expire`` in batches queued on the commit thread; ``done(dropped)``
        runs on the engine's thread at the end."""
        dropped = 0

        def submit(cursor: retention.Cursor) -> None:
            self._commits.run_on_thread(_expiry(finished_before, cursor), landed)

        def landed(future: Future[ExpiryResult]) -> None:
            nonlocal dropped
            try:
                outcome = future.result()
            except sqlite3.Error as exc:
                log.error("store: expiring finished runs failed (next time, then): %s", exc)
                done(dropped)
                return
            jobs, cursor = self._expired(outcome)
            dropped += jobs
            if cursor is None:
                done(dropped)
            else:
                submit(cursor)

        submit(retention.START)

    def _expired(self, outcome: ExpiryResult) -> tuple[int, retention.Cursor | None]:
        """Count what a batch deleted; the cursor for the next (None: done)."""
        jobs, cache, cursor = outcome
        self._jobs -= jobs
        self._cache -= cache
        if jobs:  # some of the recent ones may be gone from the file now
            self._recent.clear()
        return jobs, cursor

    def unavailable(self) -> str | None:
        error = self._commits.last_error
        return None if error is None else f"{type(error).__name__}: {error}"

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Commit what is pending (no retry now), then release the file."""
        if self._commits.closed:
            return
        try:
            self._commits.close()
        finally:
            self._reader.close()
            self._writer.close()
            os.close(self._lock_fd)

    def statistics(self) -> dict[str, int]:
        if self._commits.closed:
            return {}
        (unfinished,) = self._reader.execute(  # counted on the small partial index
            "SELECT count(*) FROM jobs WHERE finished_at IS NULL"
        ).fetchone()
        return {
            "jobs": self._jobs,
            "unfinished_jobs": unfinished,
            "cache_entries": self._cache,
            "commits": self.commits,
            "failed_commits": self.failed_commits,
            "recent_jobs": len(self._recent),
            "recent_bytes": self._recent.bytes,
            "file_bytes": schema.file_bytes(self.path),
            "wal_bytes": schema.file_bytes(self.path + "-wal"),
        }


def _expiry(
    before: float, cursor: retention.Cursor
) -> Callable[[sqlite3.Connection], ExpiryResult]:
    """One expiry transaction, to run on the commit thread."""
    return functools.partial(
        retention.expire_batch, before=before, roots=EXPIRE_BATCH, after=cursor
    )
