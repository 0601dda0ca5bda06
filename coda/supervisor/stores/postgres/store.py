"""The PostgreSQL store: the engine's state in a database a fleet can share.

Buffering, group commit, reads and retention are those of every durable
store (``..buffered``); this module brings the database: a connection pool
(psycopg 3), the schema (``schema.py``) and the SQL (``rows.py``). Commits
run on the pipeline's thread, each batch on a connection taken from the
pool; point reads take one on the engine's thread (a few hundred
microseconds on a local network: reads are off the hot path, which works
from memory).

A connection lost to a PostgreSQL restart is replaced by the pool; a commit
that fails meanwhile is retried (see ``..commits``) and new work is refused
with the reason until one succeeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from psycopg_pool import ConnectionPool

from ...clock import Clock
from ...jobs import Job
from ..base import CacheKey, ScheduleMark
from ..buffered import BufferedStore, Cursor, ExpiryResult
from ..codec import decode_job
from .rows import CACHED_STEPS, Pool, Rows, expire_batch
from .schema import PostgresUrl, migrate
from .traffic import CountingConnection, Traffic

if TYPE_CHECKING:
    from .fleet import PostgresFleet

__all__ = ["PostgresStore"]

POOL_SIZE = 4  # connections: the commit thread, the engine's reads, the fleet's listener


class PostgresStore(BufferedStore[Pool]):
    """Jobs and cache entries in PostgreSQL, group-committed.

    Without a ``clock`` every change is committed before the call returns."""

    shared = True

    def __init__(self, url: str, *, clock: Clock | None = None) -> None:
        self.url = PostgresUrl(url)
        migrate(self.url)  # says why, in one line, when the database cannot be reached
        self.traffic = Traffic()
        self.pool: Pool = ConnectionPool(
            self.url.dsn,
            connection_class=CountingConnection,
            configure=lambda conn: cast(CountingConnection, conn).count_in(self.traffic),
            min_size=1,
            max_size=POOL_SIZE,
            open=True,
            name=f"coda-{self.url.schema}",
        )
        self.channels = {name: self.url.channel(name) for name in ("work", "done", "cancel")}
        # told, on the engine's thread, of jobs whose update was fenced off:
        # another supervisor reclaimed them (see rows.py)
        self.on_fenced: Callable[[set[str]], None] = lambda ids: None
        super().__init__(self.pool, clock)

    @classmethod
    def from_url(cls, url: str, clock: Clock | None = None) -> PostgresStore:
        return cls(url, clock=clock)

    # -- the SQL ------------------------------------------------------------------

    def _new_rows(self) -> Rows:
        return Rows(self.channels)

    def _counted(self, result: object) -> None:
        fenced = cast(set[str], result)  # what Rows.write returned
        if fenced:
            self.on_fenced(fenced)

    def _query(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self.pool.connection() as conn:
            return conn.execute(sql, params).fetchall()

    def _read_job(self, job_id: str) -> Job | None:
        rows = self._query("SELECT body, args FROM coda_jobs WHERE id = %s", (job_id,))
        return decode_job(*_bytes(rows[0])) if rows else None

    def read_jobs(self, job_ids: list[str]) -> list[Job]:
        """The jobs as the database has them now (any thread)."""
        rows = self._query("SELECT body, args FROM coda_jobs WHERE id = ANY(%s)", (job_ids,))
        return [decode_job(*_bytes(row)) for row in rows]

    def _read_cached(self, key: CacheKey) -> str | None:
        sql = "SELECT job_id FROM coda_cache WHERE run_id = %s AND name = %s AND key = %s"
        rows = self._query(sql, key)
        return str(rows[0][0]) if rows else None

    def _read_steps(self, run_id: str) -> list[tuple[str, bytes, str, bytes, bytes]]:
        steps = []
        for name, key, job_id, body, args in self._query(CACHED_STEPS, (run_id,)):
            steps.append((str(name), _as_bytes(key), str(job_id), _as_bytes(body), _as_bytes(args)))
        return steps

    def _read_unfinished(self) -> list[Job]:
        rows = self._query(
            "SELECT body, args FROM coda_jobs WHERE finished_at IS NULL ORDER BY created_at", ()
        )
        return [decode_job(*_bytes(row)) for row in rows]

    def _read_roots(
        self, state: str | None, since: float | None, before: Cursor, limit: int
    ) -> list[Job]:
        sql = "SELECT body, args FROM coda_jobs WHERE parent_run IS NULL"
        sql += " AND (created_at, id) < (%s, %s)"
        params: list[object] = [before[0], before[1] or "\uffff"]
        if state is not None:
            sql, params = sql + " AND state = %s", [*params, state]
        if since is not None:
            sql, params = sql + " AND created_at >= %s", [*params, since]
        rows = self._query(sql + " ORDER BY created_at DESC, id DESC LIMIT %s", (*params, limit))
        return [decode_job(*_bytes(row)) for row in rows]

    def _read_children(self, run_id: str) -> list[Job]:
        rows = self._query(
            "SELECT body, args FROM coda_jobs WHERE parent_run = %s ORDER BY created_at", (run_id,)
        )
        return [decode_job(*_bytes(row)) for row in rows]

    def _read_marks(self) -> dict[str, ScheduleMark]:
        rows = self._query("SELECT name, covered, last_tick FROM coda_schedules", ())
        return {
            str(name): ScheduleMark(float(str(covered)), None if last is None else float(str(last)))
            for name, covered, last in rows
        }

    def _expire_batch(self, db: Pool, before: float, roots: int, after: Cursor) -> ExpiryResult:
        return expire_batch(db, before, roots, after)

    def fleet(
        self,
        clock: Clock,
        *,
        supervisor_id: str,
        queues: tuple[str, ...],
        lease: float,
        poll: float,
    ) -> PostgresFleet:
        """This supervisor's membership of the fleet on this database."""
        from .fleet import PostgresFleet

        return PostgresFleet(
            self, clock, supervisor_id=supervisor_id, queues=queues, lease=lease, poll=poll
        )

    # -- lifecycle -------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        try:
            self._close_commits()
        finally:
            self.pool.close()

    def statistics(self) -> dict[str, int]:
        if self.closed:
            return {}
        ((jobs, unfinished, cache),) = self._query(
            "SELECT (SELECT count(*) FROM coda_jobs), "
            "(SELECT count(*) FROM coda_jobs WHERE finished_at IS NULL), "
            "(SELECT count(*) FROM coda_cache)",
            (),
        )
        return {
            "jobs": int(str(jobs)),
            "unfinished_jobs": int(str(unfinished)),
            "cache_entries": int(str(cache)),
            **self._buffer_statistics(),
            "statements": self.traffic.statements,
            "round_trips": self.traffic.round_trips,
        }


def _as_bytes(value: object) -> bytes:
    return bytes(cast(bytes, value))


def _bytes(row: tuple[object, ...]) -> tuple[bytes, bytes]:
    return _as_bytes(row[0]), _as_bytes(row[1])
