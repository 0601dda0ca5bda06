"""Counting what the store asks of PostgreSQL: statements and round trips.

A fleet's ceiling is its one database, so the cost that decides how far it
scales is the database's work per task (``python -m bench.fleet`` reports
it). Every connection of the store's pool counts, in one ``Traffic``: a
statement is one round trip; ``executemany`` sends its statements in one
pipeline (one round trip, as many statements as rows); a transaction adds
its ``BEGIN`` and ``COMMIT``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

__all__ = ["CountingConnection", "Traffic"]


class Traffic:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.statements = 0
        self.round_trips = 0

    def add(self, statements: int, round_trips: int) -> None:
        with self._lock:
            self.statements += statements
            self.round_trips += round_trips


class _CountingCursor(psycopg.Cursor[tuple[Any, ...]]):
    traffic: Traffic | None = None

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        if self.traffic is not None:
            self.traffic.add(1, 1)
        return super().execute(query, params, **kwargs)

    def executemany(self, query: Any, params_seq: Iterable[Any], **kwargs: Any) -> None:
        rows = list(params_seq)
        if self.traffic is not None:
            self.traffic.add(len(rows), 1)
        super().executemany(query, rows, **kwargs)


class CountingConnection(psycopg.Connection[tuple[Any, ...]]):
    """A connection whose statements, and those of its cursors, are counted
    in the ``Traffic`` the pool configures it with (``count_in``)."""

    traffic: Traffic | None = None

    def count_in(self, traffic: Traffic) -> None:
        self.traffic = traffic
        cursor_type = type("CountingCursor", (_CountingCursor,), {"traffic": traffic})
        self.cursor_factory = cursor_type

    @contextmanager
    def transaction(
        self, savepoint_name: str | None = None, force_rollback: bool = False
    ) -> Iterator[psycopg.Transaction]:
        if self.traffic is not None:
            self.traffic.add(2, 2)  # BEGIN and COMMIT
        with super().transaction(savepoint_name, force_rollback) as tx:
            yield tx
