"""The SQLite store (see store.py): the file (schema.py), its rows (rows.py)
and retention (retention.py); buffering and group commit are shared with the
other durable store (``..buffered``, ``..commits``)."""

from .store import SqliteStore

__all__ = ["SqliteStore"]
