"""The SQLite file under ``SqliteStore``: its URL, lock, schema and connections.

This module and its neighbours know SQL and bytes (``rows.py`` encodes jobs,
``retention.py`` deletes expired trees); the store (``store.py``) knows when
to write.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from urllib.parse import parse_qs, urlsplit

from ....errors import ConfigurationError

__all__ = [
    "SCHEMA_VERSION",
    "check_file",
    "check_integrity",
    "connect",
    "counts",
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
CREATE INDEX IF NOT EXISTS jobs_roots ON jobs (created_at, id) WHERE parent_run IS NULL;
CREATE TABLE IF NOT EXISTS cache (
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    key BLOB NOT NULL,
    job_id TEXT NOT NULL,
    PRIMARY KEY (run_id, name, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS schedules (
    name TEXT PRIMARY KEY,
    covered REAL NOT NULL,
    last_tick REAL
) WITHOUT ROWID;
"""


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


def check_file(path: str) -> None:
    """Before opening: refuse what cannot be a store, and drop a stale
    shared-memory index.

    A file of 0 bytes is what a truncated store looks like (SQLite would
    take it for a new, empty database and the work it held would silently
    be gone). The ``-shm`` file is only an index of the WAL, rebuilt from
    the WAL when missing; a damaged one makes SQLite read out of bounds of
    its mapping (the process dies by SIGBUS), so with the store's lock held,
    no other supervisor can be using it, and it is removed."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return  # a new store
    if size == 0:
        raise ConfigurationError(
            f"the store {path!r} is an empty file, not a Coda store (truncated?): "
            "move it away to start a new store there"
        )
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path + "-shm")


def check_integrity(db: sqlite3.Connection, path: str) -> None:
    """``PRAGMA quick_check`` (every page and index, in time linear in the
    file's size): a damaged store is refused at start, with what to do,
    instead of failing reads and commits later while looking alive."""
    try:
        problems = [" ".join(str(row[0]).split()) for row in db.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        problems = [str(exc)]
    if problems != ["ok"]:
        raise ConfigurationError(
            f"the store {path!r} is damaged ({'; '.join(problems)}): restore it from a backup, "
            "or move it away to start a new store (the work it holds is then lost)"
        )


def connect(path: str, synchronous: str, *, writer: bool) -> sqlite3.Connection:
    """The writer creates the schema and is used from the store's commit
    thread (and for small commits from the loop, never at the same time);
    the reader serves the event loop's point reads."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=not writer)
    db.execute("PRAGMA busy_timeout = 5000")
    if not writer:
        db.execute("PRAGMA query_only = 1")
        return db
    try:
        check_integrity(db, path)
    except ConfigurationError:
        db.close()
        raise
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


def counts(db: sqlite3.Connection) -> tuple[int, int]:
    """Rows in jobs and cache: a scan, done once when the store opens."""
    (jobs,) = db.execute("SELECT count(*) FROM jobs").fetchone()
    (cache,) = db.execute("SELECT count(*) FROM cache").fetchone()
    return int(jobs), int(cache)


def file_bytes(path: str) -> int:
    """The size of a file, 0 if it does not exist (the WAL between runs)."""
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0
