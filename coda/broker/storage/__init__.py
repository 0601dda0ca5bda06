"""Where the broker's durable state is kept: the contract (``base``) and its stores.

The broker shares the supervisor's ``--store``: ``memory://`` keeps nothing
past the process; ``sqlite:///...`` puts the broker's tables in the same
file as the engine's state. On ``postgresql://`` (a fleet) one supervisor
serves the broker from the database's tables (``postgres``, see
``coda.broker.fleet``) and the others relay to it.
"""

from __future__ import annotations

import logging

from ...errors import ConfigurationError
from ...supervisor.clock import Clock
from .base import BrokerStore
from .memory import MemoryBrokerStore
from .records import (
    BrokerSnapshot,
    StoredBinding,
    StoredChord,
    StoredExchange,
    StoredMessage,
    StoredQueue,
    StoredResult,
)
from .sqlite import SqliteBrokerStore

__all__ = [
    "BrokerSnapshot",
    "BrokerStore",
    "MemoryBrokerStore",
    "SqliteBrokerStore",
    "StoredBinding",
    "StoredChord",
    "StoredExchange",
    "StoredMessage",
    "StoredQueue",
    "StoredResult",
    "open_broker_store",
]

log = logging.getLogger("coda.broker")


def open_broker_store(url: str, clock: Clock | None = None) -> BrokerStore:
    """The broker's store in the supervisor's ``--store``; ``clock`` drives
    group commits (without one, each change is committed at once)."""
    if url in ("memory://", "memory"):
        return MemoryBrokerStore()
    if url.startswith("sqlite:"):
        return SqliteBrokerStore.from_url(url, clock)
    if url.startswith(("postgresql:", "postgres:")):
        return MemoryBrokerStore()  # a fleet: its leader opens PostgresBrokerStore (fleet.py)
    raise ConfigurationError(
        f"the coda:// broker cannot keep its state in {url!r}: use memory:// or "
        "sqlite:///path/to/file.sqlite3"
    )
