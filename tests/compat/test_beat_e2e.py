"""A Celery app's beat_schedule run by a real supervisor (``--celery-beat``)
and its workers, with no ``celery beat`` process."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from coda.schedules import Cron
from coda.testing import SupervisorProcess, wait_until
from tests.apps.journal import lines
from tests.e2e.test_cli import coda_cli

pytestmark = pytest.mark.e2e

APP = "tests.apps.celery_beat_app:app"
EVERY_SECOND = "beat:report-every-second"


def reports(journal: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines(str(journal))]


def test_beat_schedule_entries_run_from_the_supervisor_each_tick_once(tmp_path: Path) -> None:
    journal = tmp_path / "beat.log"
    args = ["--celery-app", APP, "--celery-beat", "--queues", "default,beat-q"]
    env = {"CODA_TEST_BEAT_JOURNAL": str(journal)}
    with SupervisorProcess([], workers=1, extra_args=args, env=env) as sup:
        wait_until(lambda: len(reports(journal)) >= 3, what="three ticks of the entry")
        schedules = {s["name"]: s for s in sup.status()["schedules"]}
        status = coda_cli("status", "--supervisor", sup.address)
    seen = reports(journal)
    ids = [report["id"] for report in seen]
    assert len(ids) == len(set(ids))  # each tick once
    assert all(i.startswith(EVERY_SECOND + "@") and i.endswith("Z") for i in ids)
    assert {(r["value"], r["label"], r["routing_key"], r["beat"]) for r in seen} == {
        ("positional", "keyword", "beat-q", True)  # args, kwargs, options, beat's header
    }
    assert schedules[EVERY_SECOND]["schedule"] == "every 1s"
    nightly = schedules["beat:nightly-cleanup"]
    assert nightly["schedule"] == "30 3 * * *" and nightly["last"] is None
    assert nightly["next"] == Cron("30 3 * * *").next_after(time.time())
    assert nightly["target"] == "tests.apps.celery_beat_app.nightly"
    assert "beat:nightly-cleanup" in status.stdout and "30 3 * * *" in status.stdout


def test_celery_beat_needs_the_app_and_refuses_an_entry_it_cannot_run(tmp_path: Path) -> None:
    base = ["supervisor", "--workers", "0", "--listen", "127.0.0.1:0"]
    base += ["--store", f"sqlite:///{tmp_path}/state.sqlite3"]
    done = coda_cli(*base, "--celery-beat")
    assert done.returncode == 1
    assert (
        done.stderr == "Error: --celery-beat runs a Celery app's beat_schedule: add --celery-app\n"
    )
    done = coda_cli(
        *base, "--celery-app", APP, "--celery-beat", env={"CODA_TEST_BEAT_FOREIGN": "1"}
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: beat_schedule['foreign'] of the Celery app tests.apps.celery_beat_app runs "
        "'billing.invoice', which is not a task of that app, so no Coda worker can run it: "
        "leave this entry to a celery beat of its own, or remove it"
    )
