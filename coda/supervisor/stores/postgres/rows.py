"""The SQL of ``PostgresStore``: writing a batch, reading jobs, expiring trees."""

from __future__ import annotations

import dataclasses
from typing import Any

from psycopg_pool import ConnectionPool

from ....messages import Payload
from ...jobs import Job
from ..base import CacheKey, ScheduleMark
from ..codec import NO_ARGS, encode_args, encode_body, finished_at
from .schema import Connection

__all__ = ["CACHED_STEPS", "Cursor", "Pool", "Rows", "expire_batch"]

Pool = ConnectionPool[Connection]
Cursor = tuple[float, str]  # (finished_at, id) of the last root examined

UPSERT_JOB = """
INSERT INTO coda_jobs (id, parent_run, kind, queue, state, owner, epoch, ready_at,
                       finished_at, created_at, args, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET
    state = excluded.state, owner = excluded.owner, epoch = excluded.epoch,
    ready_at = excluded.ready_at, finished_at = excluded.finished_at,
    args = excluded.args, body = excluded.body
"""
UPDATE_JOB = """
UPDATE coda_jobs SET state = %s, owner = %s, epoch = %s, ready_at = %s, finished_at = %s,
    body = %s WHERE id = %s
"""
UPDATE_JOB_ARGS = """
UPDATE coda_jobs SET state = %s, owner = %s, epoch = %s, ready_at = %s, finished_at = %s,
    body = %s, args = %s WHERE id = %s
"""
UPSERT_CACHE = """
INSERT INTO coda_cache (run_id, name, key, job_id) VALUES (%s, %s, %s, %s)
ON CONFLICT (run_id, name, key) DO UPDATE SET job_id = excluded.job_id
"""
# a mark never moves back (ScheduleMark.merged); GREATEST ignores NULLs
SAVE_MARK = """
INSERT INTO coda_schedules (name, covered, last_tick) VALUES (%s, %s, %s)
ON CONFLICT (name) DO UPDATE SET
    covered = GREATEST(coda_schedules.covered, excluded.covered),
    last_tick = GREATEST(coda_schedules.last_tick, excluded.last_tick)
"""
CACHED_STEPS = """
SELECT coda_cache.name, coda_cache.key, coda_cache.job_id, coda_jobs.body, coda_jobs.args
FROM coda_cache JOIN coda_jobs ON coda_jobs.id = coda_cache.job_id
WHERE coda_cache.run_id = %s
"""

# The next ``roots`` finished root runs after the cursor and every job beneath
# them; the trees that still hold an unfinished job are spared (kept whole).
EXPIRE = """
WITH RECURSIVE roots AS (
    SELECT id, finished_at FROM coda_jobs
    WHERE parent_run IS NULL AND finished_at < %(before)s
        AND (finished_at, id) > (%(after_time)s, %(after_id)s)
    ORDER BY finished_at, id
    LIMIT %(roots)s
),
tree (id, root) AS (
    SELECT id, id FROM roots
    UNION ALL
    SELECT coda_jobs.id, tree.root FROM coda_jobs JOIN tree ON coda_jobs.parent_run = tree.id
),
spared AS (
    SELECT DISTINCT tree.root FROM tree JOIN coda_jobs USING (id)
    WHERE coda_jobs.finished_at IS NULL
),
doomed AS (SELECT id FROM tree WHERE root NOT IN (SELECT root FROM spared)),
dropped_cache AS (
    DELETE FROM coda_cache WHERE run_id IN (SELECT id FROM doomed) RETURNING 1
),
dropped_jobs AS (
    DELETE FROM coda_jobs WHERE id IN (SELECT id FROM doomed) RETURNING 1
)
SELECT (SELECT count(*) FROM dropped_jobs), (SELECT count(*) FROM dropped_cache),
    (SELECT count(*) FROM roots),
    (SELECT finished_at FROM roots ORDER BY finished_at DESC, id DESC LIMIT 1),
    (SELECT id FROM roots ORDER BY finished_at DESC, id DESC LIMIT 1)
"""


@dataclasses.dataclass
class Rows:
    """One batch, encoded on the event loop, written by the commit thread."""

    upserts: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates_args: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    cache: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    marks: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)

    def add_job(self, job: Job, written_args: Payload | None, with_args: bool) -> None:
        """``written_args``: the args this store last wrote for the job (None:
        it never wrote the row)."""
        state = (job.state.value, job.owner, job.epoch, job.ready_at, finished_at(job))
        body = encode_body(job)
        if written_args is None:
            args = encode_args(job.args) if with_args else NO_ARGS
            head = (job.id, job.parent_run, job.kind, job.queue)
            self.upserts.append((*head, *state, job.created_at, args, body))
        elif written_args is job.args:
            self.updates.append((*state, body, job.id))
        else:
            self.updates_args.append((*state, body, encode_args(job.args), job.id))

    def add_cache(self, key: CacheKey, job_id: str) -> None:
        self.cache.append((*key, job_id))

    def add_mark(self, name: str, mark: ScheduleMark) -> None:
        self.marks.append((name, mark.covered, mark.last_tick))

    def write(self, pool: Pool) -> None:
        """Write the batch in one transaction."""
        with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            for sql, rows in (
                (UPSERT_JOB, self.upserts),
                (UPDATE_JOB, self.updates),
                (UPDATE_JOB_ARGS, self.updates_args),
                (UPSERT_CACHE, self.cache),
                (SAVE_MARK, self.marks),
            ):
                if rows:
                    cursor.executemany(sql, rows)


def expire_batch(
    pool: Pool, before: float, roots: int, after: Cursor
) -> tuple[int, int, Cursor | None]:
    """Delete, in one transaction, the next ``roots`` root runs finished
    before ``before`` (after the cursor), their trees and cache entries,
    sparing trees with an unfinished job. Returns (jobs deleted, cache
    entries deleted, the next cursor or None when no root is left)."""
    params = {"before": before, "after_time": after[0], "after_id": after[1], "roots": roots}
    with pool.connection() as conn, conn.transaction():
        row = conn.execute(EXPIRE, params).fetchone()
    assert row is not None
    jobs, cache, examined, last_time, last_id = row
    done = int(str(examined)) < roots or last_id is None
    cursor = None if done else (float(str(last_time)), str(last_id))
    return int(str(jobs)), int(str(cache)), cursor
