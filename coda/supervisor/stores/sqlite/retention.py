"""Deleting expired runs from the SQLite file, in bounded transactions."""

from __future__ import annotations

import sqlite3

__all__ = ["Cursor", "expire_batch"]

# The next ``:roots`` finished root runs after the cursor, with every job
# beneath them; then the trees holding an unfinished job are spared (their
# rows must stay while the job runs: it may still spawn, and must survive a
# restart) until a later pass.
COLLECT_EXPIRED = """
INSERT OR IGNORE INTO doomed (id, root)
WITH RECURSIVE tree (id, root) AS (
    SELECT id, id FROM (
        SELECT id FROM jobs
        WHERE parent_run IS NULL AND finished_at < :before
            AND (finished_at, id) > (:after_time, :after_id)
        ORDER BY finished_at, id
        LIMIT :roots
    )
    UNION ALL
    SELECT jobs.id, tree.root FROM jobs JOIN tree ON jobs.parent_run = tree.id
)
SELECT id, root FROM tree
"""
LAST_ROOT = """
SELECT finished_at, id FROM jobs WHERE id IN (SELECT root FROM doomed)
ORDER BY finished_at DESC, id DESC LIMIT 1
"""
SPARE_RUNNING_TREES = """
DELETE FROM doomed WHERE root IN (
    SELECT doomed.root FROM doomed JOIN jobs USING (id) WHERE jobs.finished_at IS NULL
)
"""

Cursor = tuple[float, str]  # (finished_at, id) of the last root examined


def expire_batch(
    db: sqlite3.Connection, before: float, roots: int, after: Cursor
) -> tuple[int, int, Cursor | None]:
    """Delete, in one transaction, the next ``roots`` root runs finished
    before ``before`` (after the cursor ``after``), every job beneath them
    and their cache entries, sparing the trees that still hold an unfinished
    job. Returns (jobs deleted, cache entries deleted, the cursor to pass
    next, or None when no root is left)."""
    params = {"before": before, "after_time": after[0], "after_id": after[1], "roots": roots}
    with db:
        db.execute("DELETE FROM doomed")
        db.execute(COLLECT_EXPIRED, params)
        (examined,) = db.execute("SELECT count(DISTINCT root) FROM doomed").fetchone()
        last = db.execute(LAST_ROOT).fetchone()
        db.execute(SPARE_RUNNING_TREES)
        cache = db.execute("DELETE FROM cache WHERE run_id IN (SELECT id FROM doomed)").rowcount
        jobs = db.execute("DELETE FROM jobs WHERE id IN (SELECT id FROM doomed)").rowcount
        db.execute("DELETE FROM doomed")
    cursor = None if examined < roots or last is None else (float(last[0]), str(last[1]))
    return jobs, cache, cursor
