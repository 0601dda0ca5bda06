"""The SQL of ``PostgresStore``: writing a batch, reading jobs, expiring trees.

Writes are fenced: an update of a job applies only while this supervisor
still holds it (its ``owner`` and the ``epoch`` of its claim match the row),
so a supervisor that lost its lease, and whose jobs another one reclaimed,
cannot overwrite the newer attempt. A batch reports the jobs whose update
did not apply. It also wakes the fleet, in the same transaction (``NOTIFY``
is delivered at commit): new jobs nobody holds wake the supervisors that
consume their queue; a job's end wakes whoever waits for it elsewhere.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from psycopg_pool import ConnectionPool

from ....messages import Payload
from ...jobs import Job
from ..base import CacheKey, ScheduleMark
from ..codec import NO_ARGS, encode_args, encode_body, finished_at
from .schema import Connection

__all__ = ["CACHED_STEPS", "Cursor", "Pool", "Rows", "expire_batch", "notify_chunks"]

Pool = ConnectionPool[Connection]
Cursor = tuple[float, str]  # (finished_at, id) of the last root examined

# A job this store never wrote is inserted; if another supervisor inserted
# the same id first (two submits of one run id at once: a schedule's tick on
# two supervisors), theirs stands: the run is one.
UPSERT_JOB = """
INSERT INTO coda_jobs (id, parent_run, kind, queue, state, owner, epoch, ready_at,
                       finished_at, created_at, args, body)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO NOTHING
"""
UPDATE_JOB = """
UPDATE coda_jobs SET state = %s, owner = %s, epoch = %s, ready_at = %s, finished_at = %s,
    body = %s WHERE id = %s AND owner IS NOT DISTINCT FROM %s AND epoch = %s RETURNING id
"""
UPDATE_JOB_ARGS = """
UPDATE coda_jobs SET state = %s, owner = %s, epoch = %s, ready_at = %s, finished_at = %s,
    body = %s, args = %s WHERE id = %s AND owner IS NOT DISTINCT FROM %s AND epoch = %s
RETURNING id
"""
NOTIFY = "SELECT pg_notify(%s, %s)"
NOTIFY_PAYLOAD = 7000  # bytes per notification (PostgreSQL's limit is 8000)
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
    """One batch, encoded on the event loop, written by the commit thread.

    ``channels``: the fleet's notification channels (``work``, ``done``)."""

    channels: dict[str, str]
    upserts: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates_args: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    cache: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    marks: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    work: set[str] = dataclasses.field(default_factory=set)  # queues with new unheld jobs
    done: list[str] = dataclasses.field(default_factory=list)  # jobs that ended

    def add_job(self, job: Job, written_args: Payload | None, with_args: bool) -> None:
        """``written_args``: the args this store last wrote for the job (None:
        it never wrote the row)."""
        state = (job.state.value, job.owner, job.epoch, job.ready_at, finished_at(job))
        body = encode_body(job)
        fence = (job.id, job.owner, job.epoch)
        if written_args is None:
            args = encode_args(job.args) if with_args else NO_ARGS
            head = (job.id, job.parent_run, job.kind, job.queue)
            self.upserts.append((*head, *state, job.created_at, args, body))
            if job.owner is None and not job.state.finished:
                self.work.add(job.queue)
        elif written_args is job.args:
            self.updates.append((*state, body, *fence))
        else:
            self.updates_args.append((*state, body, encode_args(job.args), *fence))
        if job.state.finished:
            self.done.append(job.id)

    def add_cache(self, key: CacheKey, job_id: str) -> None:
        self.cache.append((*key, job_id))

    def add_mark(self, name: str, mark: ScheduleMark) -> None:
        self.marks.append((name, mark.covered, mark.last_tick))

    def write(self, pool: Pool) -> set[str]:
        """Write the batch in one transaction; return the ids of the jobs
        whose update was fenced off (another supervisor holds them now)."""
        updated: set[str] = set()
        with pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            if self.upserts:
                cursor.executemany(UPSERT_JOB, self.upserts)
            for sql, rows in ((UPDATE_JOB, self.updates), (UPDATE_JOB_ARGS, self.updates_args)):
                if rows:
                    cursor.executemany(sql, rows, returning=True)
                    updated |= _returned_ids(cursor)
            if self.cache:
                cursor.executemany(UPSERT_CACHE, self.cache)
            if self.marks:
                cursor.executemany(SAVE_MARK, self.marks)
            notes = [(self.channels["work"], queue) for queue in sorted(self.work)]
            notes += [(self.channels["done"], chunk) for chunk in notify_chunks(self.done)]
            if notes:
                cursor.executemany(NOTIFY, notes)
        attempted = {row[-3] for row in self.updates} | {row[-3] for row in self.updates_args}
        return attempted - updated


def _returned_ids(cursor: Any) -> set[str]:
    ids = set()
    while True:
        row = cursor.fetchone()
        if row is not None:
            ids.add(str(row[0]))
        if not cursor.nextset():
            return ids


def notify_chunks(ids: list[str]) -> list[str]:
    """Job ids joined by spaces into payloads under ``NOTIFY_PAYLOAD`` bytes."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for job_id in ids:
        if current and size + len(job_id) + 1 > NOTIFY_PAYLOAD:
            chunks.append(" ".join(current))
            current, size = [], 0
        current.append(job_id)
        size += len(job_id) + 1
    if current:
        chunks.append(" ".join(current))
    return chunks


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
