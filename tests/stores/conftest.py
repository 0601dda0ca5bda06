"""Every store under one harness, so one contract suite runs against each.

``StoreUnderTest.committed()`` waits until what was saved is durable, by the
store's own ``after_commit``, driving the manual clock (and waiting for the
commit thread, with a deadline) as the event loop would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from coda.supervisor.clock import ManualClock
from coda.supervisor.stores import MemoryStore, SqliteStore, Store
from coda.supervisor.stores.postgres import PostgresStore
from tests.postgres import fresh_schema
from tests.stores.committed import wait_committed


@dataclass
class StoreUnderTest:
    store: Store
    clock: ManualClock
    reopen: Callable[[], Store] | None  # close it, open the medium again (durable ones)

    def committed(self) -> None:
        wait_committed(self.store, self.clock)


def _memory(tmp_path: Path) -> Iterator[StoreUnderTest]:
    yield StoreUnderTest(MemoryStore(), ManualClock(), None)


def _sqlite(tmp_path: Path) -> Iterator[StoreUnderTest]:
    path = str(tmp_path / "state.sqlite3")
    clock = ManualClock()
    opened = [SqliteStore(path, clock=clock)]

    def reopen() -> Store:
        opened[-1].close()
        opened.append(SqliteStore(path))
        return opened[-1]

    try:
        yield StoreUnderTest(opened[0], clock, reopen)
    finally:
        for store in opened:
            store.close()


def _postgres(tmp_path: Path) -> Iterator[StoreUnderTest]:
    with fresh_schema() as url:
        clock = ManualClock()
        opened: list[Store] = [PostgresStore(url, clock=clock)]

        def reopen() -> Store:
            opened[-1].close()
            opened.append(PostgresStore(url))
            return opened[-1]

        try:
            yield StoreUnderTest(opened[0], clock, reopen)
        finally:
            for store in opened:
                store.close()


STORES = {"memory": _memory, "sqlite": _sqlite, "postgres": _postgres}


@pytest.fixture(params=sorted(STORES))
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    yield from STORES[request.param](tmp_path)
