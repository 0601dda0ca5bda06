"""The SQLite store: the supervisor's state in one embedded, durable file.

Buffering, group commit, reads and retention are shared with the other
durable store (``..buffered``); this module opens the file and brings its
SQL (``rows.py``, ``retention.py``, ``schema.py``).

Durability: WAL journal with ``synchronous=NORMAL``. A commit is a
``write()`` to the WAL, without fsync; the WAL is synced when checkpointed.
Committed data therefore survives the death of the supervisor process
(``kill -9``, the OOM killer, a crash), since the pages are in the kernel's
cache; a power loss or kernel crash may roll back the last commits (never
corrupt the file). Process-crash durability is what Coda promises;
``?synchronous=full`` in the store URL adds an fsync per commit.

Commits on the loop: a small batch (``INLINE_ROWS`` rows, ``INLINE_BYTES``
of payloads) is committed on the event loop when the commit thread is idle
(see ``..commits``): a one-row commit in WAL mode without fsync takes tens
of microseconds, less than the two thread hand-offs it saves. What could
stall the loop is a WAL checkpoint, which SQLite runs inside the commit that
crosses its threshold, with fsyncs: so automatic checkpoints are off, and a
checkpoint is queued on the commit thread every ``CHECKPOINT_FRAMES`` pages
or so written (estimated from the batches). While it runs, batches commit on
the thread behind it, as they did when SQLite checkpointed inside a commit:
the loop never waits for it, and no commit runs beside it, so it completes
and the next commit starts the WAL over (with commits beside a checkpoint,
it may never catch up, and the WAL would grow without bound).

Leases: a RUNNING job and its worker id *are* the lease. Worker ids belong to
one supervisor generation, so after a restart every RUNNING job is a lease of
the dead generation, and the engine requeues it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from concurrent.futures import Future
from typing import cast

from ....errors import ConfigurationError
from ...clock import Clock
from ...jobs import Job
from ..base import CacheKey, ScheduleMark
from ..buffered import BufferedStore, Cursor, ExpiryResult, RowBatch
from ..codec import decode_job
from ..commits import Batch
from . import retention, schema
from .rows import CACHED_STEPS, Rows

log = logging.getLogger("coda.store")

__all__ = ["CHECKPOINT_FRAMES", "INLINE_BYTES", "INLINE_ROWS", "SqliteStore"]

INLINE_ROWS = 16  # a batch of at most this many rows...
INLINE_BYTES = 64 * 1024  # ...holding at most this many bytes of payloads commits on the loop
CHECKPOINT_FRAMES = 1000  # SQLite's own default threshold for automatic checkpoints
PAGE = 4096


class SqliteStore(BufferedStore[sqlite3.Connection]):
    """Jobs and cache entries in a WAL-mode SQLite file, group-committed.

    Without a ``clock`` every change is committed before the call returns
    (scripts, tools, tests that open the file on its own)."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str = "NORMAL",
        clock: Clock | None = None,
        commit_on_loop: bool = True,
    ) -> None:
        self.path = path
        self._lock_fd = schema.lock(path)
        try:
            schema.check_file(path)
            self._writer = schema.connect(path, synchronous, writer=True)
            self._reader = schema.connect(path, synchronous, writer=False)
            if commit_on_loop and clock is not None:
                self._writer.execute("PRAGMA wal_autocheckpoint = 0")  # ours: see the docstring
        except sqlite3.Error as exc:
            os.close(self._lock_fd)
            raise ConfigurationError(f"cannot open the store {path!r}: {exc}") from exc
        except ConfigurationError:
            os.close(self._lock_fd)
            raise
        self._jobs, self._cache = schema.counts(self._writer)  # then kept up to date
        self._commits_on_loop = commit_on_loop and clock is not None
        self._frames = 0  # pages written since the last checkpoint, about
        self._checkpointing = False
        self.checkpoints = 0
        super().__init__(self._writer, clock)

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> SqliteStore:
        path, synchronous = schema.parse_sqlite_url(url)
        return cls(path, synchronous=synchronous, clock=clock)

    # -- the SQL ------------------------------------------------------------------

    def _new_rows(self) -> Rows:
        return Rows()

    def _commit_inline(self, batch: Batch[sqlite3.Connection]) -> bool:
        return (
            isinstance(batch, RowBatch)
            and batch.row_count <= INLINE_ROWS
            and batch.payload_bytes <= INLINE_BYTES
        )

    def _landed(self, batch: RowBatch[sqlite3.Connection], result: object) -> None:
        super()._landed(batch, result)
        if not self._commits_on_loop:
            return
        # each row touches a table page and a few index pages; payloads add theirs
        self._frames += 1 + 3 * batch.row_count + batch.payload_bytes // PAGE
        if self._frames >= CHECKPOINT_FRAMES and not self._checkpointing:
            self._checkpointing = True
            self._frames = 0
            self._commits.run_on_thread(_checkpoint, self._checkpointed)

    def _checkpointed(self, future: Future[None]) -> None:
        self._checkpointing = False
        self.checkpoints += 1
        if future.exception() is not None:  # the next one will try again
            log.warning("store: WAL checkpoint failed: %s", future.exception())

    def _counted(self, result: object) -> None:
        new_jobs, new_cache = cast(tuple[int, int], result)  # what Rows.write returned
        self._jobs += new_jobs
        self._cache += new_cache

    def _uncounted(self, jobs: int, cache: int) -> None:
        self._jobs -= jobs
        self._cache -= cache

    def _read_job(self, job_id: str) -> Job | None:
        row = self._reader.execute("SELECT body, args FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return None if row is None else decode_job(*row)

    def _read_cached(self, key: CacheKey) -> str | None:
        row = self._reader.execute(
            "SELECT job_id FROM cache WHERE run_id = ? AND name = ? AND key = ?", key
        ).fetchone()
        return None if row is None else str(row[0])

    def _read_steps(self, run_id: str) -> list[tuple[str, bytes, str, bytes, bytes]]:
        rows = self._reader.execute(CACHED_STEPS, (run_id,))
        return [(name, bytes(key), job_id, body, args) for name, key, job_id, body, args in rows]

    def _read_unfinished(self) -> list[Job]:
        rows = self._reader.execute(
            "SELECT body, args FROM jobs WHERE finished_at IS NULL ORDER BY created_at"
        ).fetchall()
        return [decode_job(body, args) for body, args in rows]

    def _read_roots(
        self, state: str | None, since: float | None, before: Cursor, limit: int
    ) -> list[Job]:
        sql = "SELECT body, args FROM jobs WHERE parent_run IS NULL AND (created_at, id) < (?, ?)"
        params: list[object] = [before[0], before[1] or "\uffff"]
        if state is not None:
            sql, params = sql + " AND state = ?", [*params, state]
        if since is not None:
            sql, params = sql + " AND created_at >= ?", [*params, since]
        rows = self._reader.execute(
            sql + " ORDER BY created_at DESC, id DESC LIMIT ?", (*params, limit)
        )
        return [decode_job(body, args) for body, args in rows]

    def _read_children(self, run_id: str) -> list[Job]:
        rows = self._reader.execute(
            "SELECT body, args FROM jobs WHERE parent_run = ? ORDER BY created_at", (run_id,)
        )
        return [decode_job(body, args) for body, args in rows]

    def _read_marks(self) -> dict[str, ScheduleMark]:
        rows = self._reader.execute("SELECT name, covered, last_tick FROM schedules")
        return {name: ScheduleMark(covered, last_tick) for name, covered, last_tick in rows}

    def _expire_batch(
        self, db: sqlite3.Connection, before: float, roots: int, after: Cursor
    ) -> ExpiryResult:
        return retention.expire_batch(db, before, roots, after)

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        """Commit what is pending (no retry now), then release the file."""
        if self.closed:
            return
        try:
            self._close_commits()
        finally:
            self._reader.close()
            self._writer.close()
            os.close(self._lock_fd)

    def statistics(self) -> dict[str, int]:
        if self.closed:
            return {}
        (unfinished,) = self._reader.execute(  # counted on the small partial index
            "SELECT count(*) FROM jobs WHERE finished_at IS NULL"
        ).fetchone()
        return {
            "jobs": self._jobs,
            "unfinished_jobs": unfinished,
            "cache_entries": self._cache,
            **self._buffer_statistics(),
            "checkpoints": self.checkpoints,
            "commits_on_loop": self._commits.inline_commits,
            "file_bytes": schema.file_bytes(self.path),
            "wal_bytes": schema.file_bytes(self.path + "-wal"),
        }


def _checkpoint(db: sqlite3.Connection) -> None:
    """On the commit thread, between two commits."""
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
