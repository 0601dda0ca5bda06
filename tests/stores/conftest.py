"""Every store under one harness, so one contract suite runs against each.

``StoreUnderTest.committed()`` waits until what was saved is durable, by the
store's own ``after_commit``, driving the manual clock (and waiting for the
commit thread, with a deadline) as the event loop would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from coda.supervisor.clock import ManualClock
from coda.supervisor.stores import MemoryStore, SqliteStore, Store


@dataclass
class StoreUnderTest:
    store: Store
    clock: ManualClock
    reopen: Callable[[], Store] | None  # close it, open the medium again (durable ones)

    def committed(self) -> None:
        wait_committed(self.store, self.clock)


class Durable(Protocol):
    def after_commit(self, callback: Callable[[], None]) -> None: ...


def wait_committed(store: Durable, clock: ManualClock) -> None:
    """Until what ``store`` was given is durable, by its own ``after_commit``."""
    done: list[bool] = []
    store.after_commit(lambda: done.append(True))
    clock.settle()
    while not done:
        clock.wait_threadsafe()


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


STORES = {"memory": _memory, "sqlite": _sqlite}


@pytest.fixture(params=sorted(STORES))
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreUnderTest]:
    yield from STORES[request.param](tmp_path)
