"""Rows of the SQLite file: how a batch of jobs and cache entries is written.

A few columns serve the queries (parent, state, timestamps); the job itself
is encoded by ``..codec``.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from typing import Any

from ....messages import Payload
from ...jobs import Job
from ..base import CacheKey, ScheduleMark
from ..codec import NO_ARGS, decode_job, encode_args, encode_body, finished_at

__all__ = ["CACHED_STEPS", "Rows", "decode_job"]  # decode_job: re-exported for the store

# Inserts are INSERT OR IGNORE, so their row count says how many rows are new
# (the store keeps its statistics without counting the tables); the rare rows
# that were there already are then updated.
INSERT_JOB = """
INSERT OR IGNORE INTO jobs (id, parent_run, state, created_at, finished_at, args, body)
VALUES (?, ?, ?, ?, ?, ?, ?)
"""
UPDATE_JOB = "UPDATE jobs SET state = ?, finished_at = ?, body = ? WHERE id = ?"
UPDATE_JOB_ARGS = "UPDATE jobs SET state = ?, finished_at = ?, body = ?, args = ? WHERE id = ?"
CACHED_STEPS = """
SELECT cache.name, cache.key, cache.job_id, jobs.body, jobs.args
FROM cache JOIN jobs ON jobs.id = cache.job_id
WHERE cache.run_id = ?
"""
INSERT_CACHE = "INSERT OR IGNORE INTO cache (run_id, name, key, job_id) VALUES (?, ?, ?, ?)"
UPDATE_CACHE = "UPDATE cache SET job_id = ? WHERE run_id = ? AND name = ? AND key = ?"
# a mark never moves back (ScheduleMark.merged); SQLite's max() of a NULL is NULL
SAVE_MARK = """
INSERT INTO schedules (name, covered, last_tick) VALUES (?, ?, ?)
ON CONFLICT (name) DO UPDATE SET
    covered = max(covered, excluded.covered),
    last_tick = max(coalesce(last_tick, excluded.last_tick),
                    coalesce(excluded.last_tick, last_tick))
"""


@dataclasses.dataclass
class Rows:
    """One batch, encoded on the event loop, written by the commit thread."""

    upserts: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates_args: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    cache: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    marks: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)

    def add_job(self, job: Job, written_args: Payload | None, with_args: bool = True) -> None:
        """``written_args``: the args last written for this job (None: not in
        the file); without ``with_args``, a new row gets empty args (a task
        first written finished: they are never read again)."""
        state, finished, body = job.state.value, finished_at(job), encode_body(job)
        if written_args is None:
            head = (job.id, job.parent_run, state, job.created_at, finished)
            self.upserts.append((*head, encode_args(job.args) if with_args else NO_ARGS, body))
        elif written_args is job.args:
            self.updates.append((state, finished, body, job.id))
        else:
            self.updates_args.append((state, finished, body, encode_args(job.args), job.id))

    def add_cache(self, key: CacheKey, job_id: str) -> None:
        self.cache.append((*key, job_id))

    def add_mark(self, name: str, mark: ScheduleMark) -> None:
        self.marks.append((name, mark.covered, mark.last_tick))

    def write(self, db: sqlite3.Connection) -> tuple[int, int]:
        """Write the batch in one transaction; return how many jobs and
        cache entries are new in the file."""
        new_jobs = new_cache = 0
        with db:  # BEGIN ... COMMIT, or ROLLBACK on error
            if self.upserts:
                new_jobs = db.executemany(INSERT_JOB, self.upserts).rowcount
                if new_jobs < len(self.upserts):  # some were in the file already
                    again = [(r[2], r[4], r[6], r[5], r[0]) for r in self.upserts]
                    db.executemany(UPDATE_JOB_ARGS, again)
            db.executemany(UPDATE_JOB, self.updates)
            db.executemany(UPDATE_JOB_ARGS, self.updates_args)
            if self.cache:
                new_cache = db.executemany(INSERT_CACHE, self.cache).rowcount
                if new_cache < len(self.cache):  # a key moved on (its job had failed)
                    db.executemany(UPDATE_CACHE, [(r[3], r[0], r[1], r[2]) for r in self.cache])
            db.executemany(SAVE_MARK, self.marks)
        return new_jobs, new_cache
