"""Where the engine's state is kept: the contract (base.py) and its stores.

``memory://`` keeps everything in the supervisor's memory (tests; gone on
exit); ``sqlite:///relative.db`` or ``sqlite:////absolute.db`` is the
durable default, one file per supervisor; ``postgresql://user@host/db``
(the ``postgres`` extra) is a database several supervisors share, a fleet.
"""

from __future__ import annotations

from ...errors import ConfigurationError
from ..clock import Clock
from .base import CacheKey, Store
from .memory import MemoryStore
from .sqlite import SqliteStore

__all__ = ["CacheKey", "MemoryStore", "SqliteStore", "Store", "open_store"]


def open_store(url: str, clock: Clock | None = None) -> Store:
    """The store a ``--store`` URL names; ``clock`` drives a durable store's
    group commits (without one, each change commits at once)."""
    if url in ("memory://", "memory"):
        return MemoryStore()
    if url.startswith("sqlite:"):
        return SqliteStore.from_url(url, clock)
    if url.startswith(("postgresql:", "postgres:")):
        try:
            from .postgres import PostgresStore
        except ImportError as exc:
            raise ConfigurationError(
                f"a postgresql:// store needs psycopg: pip install 'coda-workflows[postgres]' "
                f"({exc})"
            ) from None
        return PostgresStore.from_url(url, clock)
    raise ConfigurationError(
        f"unknown store {url!r}: use memory://, sqlite:///path/to/file.sqlite3 "
        "or postgresql://user@host/database"
    )
