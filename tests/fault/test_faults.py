"""The fault harness in CI, at a reduced size (``--run-slow`` for the big one).

The figures of each scenario are printed in pytest's terminal summary (see
``tests/fault/conftest.py``), also when the test passes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.fault.broker_harness import BrokerScenario, run_broker_scenario
from tests.fault.harness import Scenario, backlog, poison, supervisor_kills, worker_kills
from tests.fault.report import Report

RecordProperty = Callable[[str, object], None]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

SMALL = Scenario(workflows=30, steps=4, workers=3, concurrency=2, in_flight=6, seed=7)
BIG = Scenario(workflows=200, steps=4, workers=3, concurrency=2, in_flight=8, seed=7)


def sized(request: pytest.FixtureRequest) -> Scenario:
    return BIG if request.config.getoption("--run-slow") else SMALL


def check(report: Report, record_property: RecordProperty) -> None:
    record_property("fault_report", report.format())
    assert report.accepted == report.scenario.workflows
    assert report.lost == 0, report.failed
    assert report.ledger.recorded_twice == 0
    assert report.ledger.unexplained_results == 0
    assert report.duplicate_completions == 0
    assert report.violations() == [], report.format()


def test_worker_kills(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    base = sized(request)
    kills, pinned = (30, 10) if base is BIG else (6, 2)
    report = worker_kills(replace(base, kill_workers=kills, pinned_kills=pinned), tmp_path)
    check(report, record_property)
    assert report.kills == kills
    assert report.reexecution_bound is not None
    assert report.ledger.raw_reexecutions <= report.reexecution_bound
    # The pinned kills land while their step waits at a gate, so each leaves a
    # step body that began and never finished (random kills may add more).
    assert report.ledger.interrupted >= pinned


def test_supervisor_kills(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    base = sized(request)
    kills = 8 if base is BIG else 2
    report = supervisor_kills(replace(base, kill_supervisor=kills), tmp_path)
    check(report, record_property)
    assert report.kills == kills
    assert report.scenario.store.startswith("sqlite:")


def test_backlog_with_worker_kills_spread_over_time(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    """Every run submitted at once, workers killed at moments spread in time:
    no run is lost, and none fails as WorkerLost for deaths it did not cause."""
    big = request.config.getoption("--run-slow")
    scenario = replace(
        BIG if big else SMALL,
        workflows=300 if big else 40,
        kill_workers=20 if big else 4,
        kill_over=60.0 if big else 2.0,
    )
    report = backlog(scenario, tmp_path)
    check(report, record_property)
    assert report.innocents_lost_to_workers == 0


def test_a_poison_step_fails_its_runs_and_no_other(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    """A step that kills its worker every time fails the runs that spawn it
    (coda.WorkerLost), after a bounded number of deaths; innocent runs on
    the same workers all complete."""
    big = request.config.getoption("--run-slow")
    scenario = replace(BIG if big else SMALL, workflows=60 if big else 20, poisoned=2 if big else 1)
    report = poison(scenario, tmp_path)
    check(report, record_property)
    assert report.innocents_lost_to_workers == 0
    assert len(report.poisoned_runs & set(report.failed)) == scenario.poisoned
    # alone on its worker it is blamed at once; shared with other tasks, it is
    # isolated first: at most twice the loss limit of worker deaths per poisoned run
    assert report.worker_deaths <= 2 * 6 * scenario.poisoned


def test_broker_supervisor_kills(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    """Celery tasks through coda:// while the supervisor is SIGKILLed and restarted."""
    big = request.config.getoption("--run-slow")
    scenario = BrokerScenario(tasks=2000, kills=8) if big else BrokerScenario(tasks=150, kills=2)
    report = run_broker_scenario(replace(scenario, seed=7), tmp_path)
    record_property("fault_report", report.format())
    assert report.published == scenario.tasks
    assert report.lost == 0
    assert report.results == len(report.confirmed)
    assert report.worker_survived
    assert report.kills == scenario.kills
    assert report.violations() == [], report.format()


def test_a_fleet_loses_nothing_when_its_supervisors_are_killed(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    """Three supervisors on one PostgreSQL; members killed (process group) and
    restarted while the others carry on and reclaim their jobs."""
    big = request.config.getoption("--run-slow")
    scenario = replace(
        BIG if big else SMALL,
        fleet=3,
        workers=2,
        workflows=200 if big else 40,
        in_flight=12,
        kill_supervisor=6 if big else 2,
    )
    report = supervisor_kills(scenario, tmp_path)
    check(report, record_property)
    assert report.kills == scenario.kill_supervisor


def test_a_fleet_loses_nothing_when_its_workers_are_killed(
    request: pytest.FixtureRequest, record_property: RecordProperty, tmp_path: Path
) -> None:
    """Three supervisors on one PostgreSQL; workers anywhere in the fleet
    killed (some pinned mid-step) while their supervisors carry on."""
    big = request.config.getoption("--run-slow")
    kills, pinned = (30, 10) if big else (6, 2)
    scenario = replace(
        BIG if big else SMALL,
        fleet=3,
        workers=2,
        workflows=200 if big else 40,
        in_flight=12,
        kill_workers=kills,
        pinned_kills=pinned,
    )
    report = worker_kills(scenario, tmp_path)
    check(report, record_property)
    assert report.kills == kills
    assert report.ledger.interrupted >= pinned
