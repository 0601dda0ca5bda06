"""Schedules a real supervisor runs: a task on a fast cron (every second) and
a workflow on an interval. Each tick appends its run id to the journal named
by ``CODA_TEST_SCHEDULE_JOURNAL`` (read at import: the schedule's arguments)."""

from __future__ import annotations

import os
from datetime import timedelta

import coda
from tests.apps.journal import record

JOURNAL = os.environ.get("CODA_TEST_SCHEDULE_JOURNAL", "")


@coda.task(schedule="* * * * * *", schedule_args={"journal": JOURNAL})
def every_second(journal: str) -> None:
    info = coda.context.task_info()
    assert info is not None
    record(journal, info.job_id)


@coda.workflow(schedule=timedelta(seconds=2), schedule_args={"journal": JOURNAL, "step": "s"})
async def every_two_seconds(journal: str, step: str) -> None:
    record(journal, coda.context.info().run_id)
