"""A fleet member whose database stops answering (a dead link: no error,
no reply) stops itself before its lease runs out, as one whose heartbeats
fail does, so that no two supervisors run its jobs at once."""

from __future__ import annotations

import time

import psycopg
import pytest

from coda.supervisor.clock import ManualClock
from coda.supervisor.stores.postgres import PostgresStore
from coda.supervisor.stores.postgres.schema import parse_postgres_url
from tests.postgres import fresh_schema

LEASE = 4.0


class Events:
    """What the fleet tells the engine; only the lease matters here."""

    def __init__(self) -> None:
        self.lost: list[str] = []

    def work_available(self) -> None:
        pass

    def finished_elsewhere(self, job_ids: list[str]) -> None:
        pass

    def cancel_requested(self, job_id: str, terminate: bool) -> None:
        pass

    def lease_lost(self, reason: str) -> None:
        self.lost.append(reason)

    def reconnected(self) -> None:
        pass


@pytest.mark.timeout(60)
def test_a_heartbeat_that_gets_no_answer_gives_the_lease_up_before_it_runs_out() -> None:
    with fresh_schema() as url:
        clock, events = ManualClock(), Events()
        store = PostgresStore(url, clock=clock)
        member = store.fleet(clock, supervisor_id="a", queues=("default",), lease=LEASE, poll=5.0)
        member.join()
        schema = parse_postgres_url(url).schema
        blocker = psycopg.connect(url.split("?")[0])
        try:
            # another transaction holds this member's row: its heartbeat
            # UPDATE waits, with no error, as on a link that went dead
            blocker.execute(f"SELECT * FROM {schema}.coda_supervisors WHERE id = 'a' FOR UPDATE")
            started = time.monotonic()
            member.start(events)  # type: ignore[arg-type]
            while not events.lost:
                clock.wait_threadsafe(timeout=2 * LEASE)
            gave_up_after = time.monotonic() - started
        finally:
            blocker.rollback()
            blocker.close()
            member.stop()
            store.close()
    (reason,) = events.lost
    assert reason.startswith("no heartbeat reached the database for ")
    assert reason.endswith("(no answer)")
    assert gave_up_after < LEASE  # before the others may take its jobs over
