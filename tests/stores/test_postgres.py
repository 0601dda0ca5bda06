"""What only the PostgreSQL store does: refuse a database it cannot reach
or one written by a newer Coda, and fence off a write from a supervisor
whose claim on a job another supervisor has since taken over."""

from __future__ import annotations

import psycopg
import pytest

from coda.errors import ConfigurationError
from coda.supervisor.clock import ManualClock
from coda.supervisor.jobs import Job, JobState
from coda.supervisor.stores.postgres import PostgresStore
from coda.supervisor.stores.postgres.schema import SCHEMA_VERSION, parse_postgres_url
from tests.postgres import fresh_schema
from tests.stores.committed import wait_committed
from tests.stores.test_contract import task


def test_an_unreachable_database_is_refused_at_open_with_the_reason() -> None:
    with pytest.raises(ConfigurationError) as info:
        PostgresStore("postgresql://postgres@127.0.0.1:1/postgres")
    message = str(info.value)
    assert message.startswith("cannot connect to the store postgresql://127.0.0.1:1/postgres: ")
    assert "\n" not in message
    assert "Connection refused" in message


def test_a_schema_written_by_a_newer_coda_is_refused_and_left_as_it_is() -> None:
    with fresh_schema() as url:
        PostgresStore(url).close()  # creates the schema at this version
        schema = parse_postgres_url(url).schema
        newer = str(SCHEMA_VERSION + 1)
        with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
            conn.execute(
                f"UPDATE {schema}.coda_meta SET value = %s WHERE key = 'schema_version'", (newer,)
            )
        with pytest.raises(ConfigurationError) as info:
            PostgresStore(url)
        assert f"has schema version {newer}, newer than this Coda's {SCHEMA_VERSION}" in str(
            info.value
        )
        assert "upgrade coda-workflows" in str(info.value)
        with psycopg.connect(url.split("?")[0]) as conn:
            row = conn.execute(
                f"SELECT value FROM {schema}.coda_meta WHERE key = 'schema_version'"
            ).fetchone()
        assert row == (newer,)


def claimed(job_id: str, owner: str, epoch: int) -> Job:
    job = task(job_id)
    job.owner, job.epoch, job.state = owner, epoch, JobState.RUNNING
    return job


def test_a_write_from_a_supervisor_whose_claim_was_taken_over_is_fenced_off() -> None:
    with fresh_schema() as url:
        clock = ManualClock()
        store = PostgresStore(url, clock=clock)
        fenced: list[set[str]] = []
        store.on_fenced = fenced.append
        try:
            mine, kept = claimed("j1", "sup-a", 1), claimed("j2", "sup-a", 1)
            store.save_job(mine)
            store.save_job(kept)
            wait_committed(store, clock)
            schema = parse_postgres_url(url).schema
            with psycopg.connect(url.split("?")[0], autocommit=True) as conn:
                # sup-b reclaims j1 after sup-a's lease ran out
                conn.execute(
                    f"UPDATE {schema}.coda_jobs SET owner = 'sup-b', epoch = 2 WHERE id = 'j1'"
                )
            for job in (mine, kept):
                job.state = JobState.SUCCEEDED
                job.finished_at = 5.0
                store.save_job(job)
            wait_committed(store, clock)
            with psycopg.connect(url.split("?")[0]) as conn:
                found = conn.execute(f"SELECT id, state, owner, epoch FROM {schema}.coda_jobs")
                rows = {str(id_): (state, owner, epoch) for id_, state, owner, epoch in found}
        finally:
            store.close()
    assert fenced == [{"j1"}]
    assert rows == {"j1": ("running", "sup-b", 2), "j2": ("succeeded", "sup-a", 1)}
