"""The SQLite store (see store.py), split by concept: the file (schema.py),
its rows (rows.py), group commit (commits.py), recently finished jobs
(recent.py) and retention (retention.py)."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
