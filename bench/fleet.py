"""Benchmark 7: a fleet on PostgreSQL against one supervisor on SQLite.

``python -m bench.fleet`` (or ``python -m bench --only fleet``). One
supervisor on the default SQLite store, then 1, 2 and 3 supervisors sharing
one PostgreSQL database, two workers each; against each, through an
``AsyncClient`` connected to the first supervisor, all in flight at once:

- no-op tasks (published by the supervisor that accepts them, claimed by
  whichever has room);
- 3-step workflows (``bench.apps.ingest``, 5 KB events): the run is
  published, its three cached steps stay with the supervisor that holds it.

PostgreSQL is the machine's (127.0.0.1:5432, or ``CODA_TEST_POSTGRES_URL``),
a fresh schema per fleet. The database's work per task is counted by the
supervisors themselves (``coda.supervisor.stores.postgres.traffic``):
statements sent and round trips made, summed over the fleet, divided by the
tasks or workflows run (heartbeats included). Those decide how a real fleet
scales: one database's write rate is the fleet's ceiling.
On this 2-core machine more supervisors share the same two cores, so they
cannot be faster; the throughput rows show the cost of coordination.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from tests.postgres import fresh_schema

from .coda_side import CodaCluster
from .events import make_events
from .report import Row, table
from .sizes import Sizes
from .systems import progress

__all__ = ["fleet_rows"]

SIZES = (1, 2, 3)  # supervisors on PostgreSQL
WORKERS = 2  # per supervisor


@dataclass
class _Counted:
    """What the database did during one measurement."""

    statements: int
    round_trips: int


def fleet_rows(sizes: Sizes) -> list[Row]:
    tasks, events = sizes.noop, make_events(sizes.chain, sizes.payloads[0])
    rows: list[Row] = []
    progress(f"fleet: {tasks} no-op tasks and {len(events)} workflows on SQLite, then PostgreSQL")
    with CodaCluster(WORKERS) as single:
        noop_sqlite = single.noop_throughput(tasks)
        chain_sqlite = single.chain_throughput(events)
    rows += [
        Row("fleet: no-op tasks/s, 1 supervisor on SQLite", "absolute", noop_sqlite, "/s"),
        Row("fleet: 3-step workflows/s, 1 supervisor on SQLite", "absolute", chain_sqlite, "/s"),
    ]
    for count in SIZES:
        progress(f"fleet: {count} supervisor(s) on PostgreSQL, {WORKERS} workers each")
        with fresh_schema() as store, _fleet(store, count) as members:
            rows += _measure(members, tasks, events, noop_sqlite, chain_sqlite)
    return rows


def _measure(
    members: list[CodaCluster],
    tasks: int,
    events: list[dict[str, object]],
    noop_sqlite: float,
    chain_sqlite: float,
) -> list[Row]:
    first, count = members[0], len(members)
    counted, noop = _counted(members, lambda: first.noop_throughput(tasks))
    rows = _rows(count, "no-op tasks", noop, counted, tasks, noop_sqlite)
    counted, chain = _counted(members, lambda: first.chain_throughput(events))
    return rows + _rows(count, "3-step workflows", chain, counted, len(events), chain_sqlite)


def _rows(
    count: int, what: str, rate: float, counted: _Counted, items: int, sqlite_rate: float
) -> list[Row]:
    label = f"fleet: {what}, {count} supervisor(s) on PostgreSQL"
    return [
        Row(f"{label}, per second", "throughput", rate, "/s", sqlite_rate, "1 on SQLite"),
        Row(f"{label}: SQL statements per item", "absolute", counted.statements / items, ""),
        Row(f"{label}: round trips per item", "absolute", counted.round_trips / items, ""),
    ]


def _counted(members: list[CodaCluster], measure: Callable[[], float]) -> tuple[_Counted, float]:
    before = _traffic(members)
    rate = measure()
    after = _traffic(members)
    return _Counted(after[0] - before[0], after[1] - before[1]), rate


def _traffic(members: list[CodaCluster]) -> tuple[int, int]:
    stores = [member.supervisor.status()["store"] for member in members]
    return sum(s["statements"] for s in stores), sum(s["round_trips"] for s in stores)


class _FleetMember(CodaCluster):
    """A ``CodaCluster`` on a PostgreSQL store."""

    def __init__(self, store: str) -> None:
        super().__init__(WORKERS, ["--store", store, "--fleet-lease", "30"])


@contextlib.contextmanager
def _fleet(store: str, count: int) -> Iterator[list[CodaCluster]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(_FleetMember(store)) for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="toy sizes")
    options = parser.parse_args()
    from .sizes import PRESETS

    rows = fleet_rows(PRESETS["quick" if options.quick else "default"])
    print(table(rows))


if __name__ == "__main__":
    main()
