"""When schedules tick (cron by cronsim, intervals), how ticks are named,
and the decorator options checked at import."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

import coda
from coda import registry
from coda.errors import ConfigurationError
from coda.schedules import Cron, Every, tick_run_id, timetable_for


@pytest.fixture(autouse=True)
def schedules_registered_here_stay_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule a test registers must not reach a supervisor that a later
    test starts in this process (``InProcessSupervisor`` runs the registry's)."""
    monkeypatch.setattr(registry, "_schedules", dict(registry._schedules))


def at(*parts: int, zone: str = "UTC") -> float:
    tz = UTC if zone == "UTC" else ZoneInfo(zone)
    return datetime(*parts, tzinfo=tz).timestamp()  # type: ignore[misc]


def test_cron_ticks_after_and_back_from_a_moment() -> None:
    five = Cron("*/5 * * * *")
    assert five.next_after(at(2026, 1, 1, 12, 0)) == at(2026, 1, 1, 12, 5)  # strictly after
    assert five.next_after(at(2026, 1, 1, 12, 3) + 0.7) == at(2026, 1, 1, 12, 5)
    back = five.ticks_back(at(2026, 1, 1, 12, 10), after=at(2026, 1, 1, 11, 55), limit=10)
    assert back == [at(2026, 1, 1, 12, m) for m in (10, 5, 0)]  # (after, until], newest first
    assert five.ticks_back(at(2026, 1, 1, 12, 10), after=0, limit=2) == back[:2]


def test_six_fields_tick_every_second() -> None:
    second = Cron("* * * * * *")
    start = at(2026, 1, 1) + 0.25
    assert second.next_after(start) == at(2026, 1, 1) + 1
    assert second.ticks_back(start + 3, after=start, limit=10) == [
        at(2026, 1, 1) + n for n in (3, 2, 1)
    ]


def test_cron_in_a_time_zone_follows_its_daylight_saving_time() -> None:
    daily = Cron("30 9 * * *", "Europe/Paris")
    # the night of 29 March 2026 the clocks go forward: 09:30 is 08:30 UTC, then 07:30 UTC
    assert daily.next_after(at(2026, 3, 28, 12, 0)) == at(2026, 3, 29, 7, 30)
    assert daily.next_after(at(2026, 3, 27, 12, 0)) == at(2026, 3, 28, 8, 30)
    assert daily.describe() == "30 9 * * * (Europe/Paris)"


def test_intervals_are_anchored_at_the_epoch_so_every_supervisor_agrees() -> None:
    hourly = timetable_for(timedelta(hours=1))
    assert hourly == Every(3600)
    assert hourly.next_after(at(2026, 1, 1, 12, 59, 59)) == at(2026, 1, 1, 13)
    assert hourly.next_after(at(2026, 1, 1, 13)) == at(2026, 1, 1, 14)
    assert hourly.ticks_back(at(2026, 1, 1, 13, 30), after=at(2026, 1, 1, 11), limit=5) == [
        at(2026, 1, 1, 13),
        at(2026, 1, 1, 12),
    ]
    assert hourly.ticks_back(at(2026, 1, 1, 13), after=at(2026, 1, 1, 13), limit=5) == []
    assert hourly.describe() == "every 1h" and Every(90).describe() == "every 90s"


def test_a_ticks_run_id_is_the_schedule_and_the_tick_in_utc() -> None:
    assert (
        tick_run_id("reports.daily", at(2026, 11, 29, 6, 55))
        == "reports.daily@2026-11-29T06:55:00Z"
    )
    assert tick_run_id("x", at(2026, 1, 1) + 1.5) == "x@2026-01-01T00:00:01.500Z"
    assert tick_run_id("x", at(2026, 1, 1) + 5.9999999) == "x@2026-01-01T00:00:06Z"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"schedule": "61 * * * *"},
            r"schedule='61 \* \* \* \*': not a valid cron expression \(Bad minute\)",
        ),
        ({"schedule": "every day"}, "not a valid cron expression"),
        ({"schedule": 60}, "a cron expression .* or a datetime.timedelta, not 60"),
        ({"schedule": timedelta(seconds=0.5)}, "at least 1 second"),
        ({"schedule": "* * * * *", "schedule_timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"schedule": "* * * * *", "schedule_missed": "some"}, "'latest', 'all', 'skip'"),
        ({"schedule": "* * * * *", "schedule_args": {"y": 1}}, "do not fit its parameters"),
        ({"schedule": "* * * * *", "schedule_args": {"x": object()}}, "cannot be encoded"),
        ({"schedule_args": {"x": 1}}, "schedule_args= needs schedule= too"),
    ],
)
def test_a_bad_schedule_fails_at_import_naming_the_function(
    options: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as raised:

        @coda.task(**options)  # type: ignore[call-overload]
        def refused_at_import(x: int = 0) -> None: ...

    assert "@coda.task tests.unit.test_schedules." in str(raised.value)
    assert "refused_at_import" in str(raised.value)
    assert not any(s.name.endswith("refused_at_import") for s in registry.all_schedules())


def test_a_scheduled_workflow_registers_its_schedule_with_its_arguments() -> None:
    @coda.workflow(schedule="0 3 * * *", schedule_args={"region": "eu"}, schedule_missed="all")
    async def nightly_report(region: str) -> None: ...

    (schedule,) = [s for s in registry.all_schedules() if s.name == nightly_report.name]
    assert schedule.target == nightly_report.name
    assert schedule.timetable == Cron("0 3 * * *")
    assert schedule.missed == "all"
    assert dict(schedule.request("any-run-id").args) == {"region": "eu"}
