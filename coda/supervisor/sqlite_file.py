"""The SQLite file under ``SqliteStore``: URL, lock, schema, connections, rows.

Kept apart from the store's buffering logic (sqlite_store.py) so each reads
on its own: this module knows SQL and bytes, the store knows when to write.

Rows: a few columns for the queries (parent, state, timestamps) and the
whole ``Job`` as MessagePack (``body``: every dataclass field but ``args``,
so a field added to ``Job`` later is kept without a migration, and rows
written before it existed decode with its default). ``args`` has its own
column, rewritten only when the job's arguments change, not at every change
of state.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import msgspec

from ..errors import ConfigurationError
from ..messages import Payload
from .jobs import Job
from .store import CacheKey

__all__ = [
    "CACHED_STEPS",
    "START",
    "Cursor",
    "Rows",
    "connect",
    "counts",
    "decode_job",
    "expire_batch",
    "file_bytes",
    "lock",
    "parse_sqlite_url",
]

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    parent_run TEXT,
    state TEXT NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL,
    args BLOB NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_children ON jobs (parent_run) WHERE parent_run IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_finished_roots ON jobs (finished_at, id) WHERE parent_run IS NULL;
CREATE INDEX IF NOT EXISTS jobs_unfinished ON jobs (created_at) WHERE finished_at IS NULL;
CREATE TABLE IF NOT EXISTS cache (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key BLOB NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (run_id, name, key)
) WITHOUT ROWID;
"""

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
START: Cursor = (-1.0, "")

_BODY_FIELDS = tuple(f.name for f in dataclasses.fields(Job) if f.name != "args")
_encode = msgspec.msgpack.Encoder().encode
_NO_ARGS = _encode(Payload("", "", b""))


def parse_sqlite_url(url: str) -> tuple[str, str]:
    """``sqlite:///relative.db`` or ``sqlite:////absolute.db`` (SQLAlchemy's
    convention, so ``f"sqlite:///{absolute_path}"`` works too), with an
    optional ``?synchronous=normal|full``. Returns (path, synchronous)."""
    parts = urlsplit(url)
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if parts.scheme != "sqlite" or parts.netloc or not path:
        raise ConfigurationError(
            f"bad store URL {url!r}: use sqlite:///relative/file.db or sqlite:////absolute/file.db"
        )
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    synchronous = query.pop("synchronous", "normal").upper()
    if synchronous not in ("NORMAL", "FULL") or query:
        raise ConfigurationError(
            f"bad store URL {url!r}: the only option is ?synchronous=normal|full"
        )
    return path, synchronous


def lock(path: str) -> int:
    """Hold ``<path>.lock`` exclusively (``flock``) for as long as the
    returned descriptor is open: one supervisor per store file. The kernel
    drops the lock when the process dies, even by ``kill -9``."""
    try:
        # a folder made for the state is private: it holds task arguments and results
        os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigurationError(f"cannot open the store {path!r}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigurationError(
            f"the store {path!r} is in use by another supervisor (pid {holder}): stop that "
            "one, or give this one a store of its own with --store (and an address with --listen)"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def connect(path: str, synchronous: str, *, writer: bool) -> sqlite3.Connection:
    """The writer creates the schema and is used from the store's commit
    thread; the reader serves the event loop's point reads."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=not writer)
    db.execute("PRAGMA busy_timeout = 5000")
    if not writer:
        db.execute("PRAGMA query_only = 1")
        return db
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise sqlite3.OperationalError(f"WAL journal mode unavailable (got {mode})")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute("PRAGMA journal_size_limit = 67108864")  # trim the WAL back to 64 MiB
    db.execute("PRAGMA temp_store = MEMORY")
    (version,) = db.execute("PRAGMA user_version").fetchone()
    if version > SCHEMA_VERSION:
        raise sqlite3.OperationalError(
            f"schema version {version} is newer than this Coda's ({SCHEMA_VERSION})"
        )
    db.executescript(SCHEMA)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    db.execute("CREATE TEMP TABLE IF NOT EXISTS doomed (id TEXT PRIMARY KEY, root TEXT NOT NULL)")
    db.isolation_level = "DEFERRED"  # ``with db:`` wraps each batch in BEGIN ... COMMIT
    return db


@dataclasses.dataclass
class Rows:
    """One batch, encoded on the event loop, written by the commit thread."""

    upserts: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    updates_args: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)
    cache: list[tuple[Any, ...]] = dataclasses.field(default_factory=list)

    def add_job(self, job: Job, written_args: Payload | None, with_args: bool = True) -> None:
        """``written_args``: the args last written for this job (None: not in
        the file); without ``with_args``, a new row gets empty args (a task
        first written finished: they are never read again)."""
        state = job.state.value
        finished_at = (job.finished_at or time.time()) if job.state.finished else None
        body = _encode({name: getattr(job, name) for name in _BODY_FIELDS})
        if written_args is None:
            head = (job.id, job.parent_run, state, job.created_at, finished_at)
            self.upserts.append((*head, _encode(job.args) if with_args else _NO_ARGS, body))
        elif written_args is job.args:
            self.updates.append((state, finished_at, body, job.id))
        else:
            self.updates_args.append((state, finished_at, body, _encode(job.args), job.id))

    def add_cache(self, key: CacheKey, job_id: str) -> None:
        self.cache.append((*key, job_id))

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
        return new_jobs, new_cache


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


def counts(db: sqlite3.Connection) -> tuple[int, int]:
    """Rows in jobs and cache: a scan, done once when the store opens."""
    (jobs,) = db.execute("SELECT count(*) FROM jobs").fetchone()
    (cache,) = db.execute("SELECT count(*) FROM cache").fetchone()
    return int(jobs), int(cache)


def decode_job(body: bytes, args: bytes) -> Job:
    fields = msgspec.msgpack.decode(body)
    fields["args"] = msgspec.msgpack.decode(args)
    return msgspec.convert(fields, Job)


def file_bytes(path: str) -> int:
    """The size of a file, 0 if it does not exist (the WAL between runs)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
