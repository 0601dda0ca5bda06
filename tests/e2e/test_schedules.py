"""Schedules run by real supervisors: every tick once, also across a restart
on the same store, and shown by ``coda status``."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from coda.supervisor.stores import SqliteStore
from coda.testing import SupervisorProcess, wait_until
from tests.apps.journal import lines
from tests.e2e.test_cli import coda_cli

pytestmark = pytest.mark.e2e

TASK = "tests.apps.scheduled.every_second"
WORKFLOW = "tests.apps.scheduled.every_two_seconds"


def ticks(journal: Path, name: str) -> list[str]:
    """The run ids the schedule's executions recorded, in order."""
    return [line for line in lines(str(journal)) if line.startswith(name + "@")]


def schedule_status(sup: SupervisorProcess, name: str) -> dict[str, object]:
    (entry,) = [s for s in sup.status()["schedules"] if s["name"] == name]
    return entry


def test_each_tick_runs_exactly_once_across_a_supervisor_restart(tmp_path: Path) -> None:
    journal = tmp_path / "ticks.log"
    path = tmp_path / "state.sqlite3"
    env = {"CODA_TEST_SCHEDULE_JOURNAL": str(journal)}

    def supervisor() -> SupervisorProcess:
        return SupervisorProcess(
            ["tests.apps.scheduled"], workers=1, store=f"sqlite:///{path}", env=env
        )

    with supervisor() as first:
        wait_until(lambda: len(ticks(journal, TASK)) >= 3, what="three ticks")
        wait_until(lambda: ticks(journal, WORKFLOW), what="a tick of the workflow")
        before = schedule_status(first, TASK)
    last_tick = float(str(before["last"]))
    # down long enough for ticks to go by (the scenario, not a wait for an outcome)
    wait_until(lambda: time.time() >= last_tick + 4, timeout=30, what="ticks to go by")
    ran_before = set(ticks(journal, TASK))

    with supervisor() as second:
        after = schedule_status(second, TASK)
        wait_until(
            lambda: len(set(ticks(journal, TASK)) - ran_before) >= 3, what="ticks after the restart"
        )

    recorded = ticks(journal, TASK)
    assert len(recorded) == len(set(recorded))  # no tick ran twice
    assert after["missed_run"] == 1  # by default, the latest missed tick runs once...
    assert isinstance(after["missed_skipped"], int) and after["missed_skipped"] >= 2  # ...only
    assert before["last_run_id"] in recorded  # submitted by the first, run by one of them
    store = SqliteStore(str(path))
    try:
        submitted = store.list_runs(state=None, name=TASK, since=None, limit=1000)
    finally:
        store.close()
    executed = {run.id for run in submitted if run.state.value == "succeeded"}
    assert executed == set(recorded)  # exactly once: every run that ran, ran once
    assert len({run.id for run in submitted}) == len(submitted)
    workflow_ticks = ticks(journal, WORKFLOW)
    assert len(workflow_ticks) == len(set(workflow_ticks)) >= 1


def test_status_shows_each_schedule_with_its_next_and_last_ticks(tmp_path: Path) -> None:
    journal = tmp_path / "ticks.log"
    env = {"CODA_TEST_SCHEDULE_JOURNAL": str(journal)}
    with SupervisorProcess(["tests.apps.scheduled"], workers=1, env=env) as sup:
        wait_until(lambda: ticks(journal, TASK), what="a tick")
        entry = wait_until(
            lambda: schedule_status(sup, TASK)["last"] and schedule_status(sup, TASK)
        )
        assert entry["schedule"] == "* * * * * *" and entry["missed"] == "latest"
        assert float(str(entry["next"])) > float(str(entry["last"]))
        done = coda_cli("status", "--supervisor", sup.address)
    assert done.returncode == 0, done.stderr
    section = done.stdout[done.stdout.index("schedules:") :].splitlines()
    assert section[1].split() == ["name", "schedule", "next", "tick", "last", "tick", "missed"]
    rows = {line.split()[0]: line for line in section[2:4]}
    assert rows[TASK].split()[1:6] == ["*", "*", "*", "*", "*"]
    assert "every 2s" in rows[WORKFLOW]
