"""A Celery app's beat_schedule read into Coda schedules, without processes:
crontabs checked against Celery's own next run, intervals, refusals, and the
message each tick submits."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from celery import Celery
from celery.beat import BeatLazyFunc
from celery.schedules import crontab, schedule

from coda import registry
from coda.compat.celery import adopt
from coda.compat.celery.beat import beat_schedules, cron_expression
from coda.compat.celery.hook import hook_for
from coda.compat.celery.message import ENVELOPE, CeleryMessage
from coda.errors import ConfigurationError
from coda.schedules import Cron, Every, tick_run_id


@pytest.fixture(autouse=True)
def schedules_registered_here_stay_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """A schedule a test registers must not reach a supervisor that a later
    test starts in this process (``InProcessSupervisor`` runs the registry's)."""
    monkeypatch.setattr(registry, "_schedules", dict(registry._schedules))


@pytest.fixture
def app() -> Iterator[Celery]:
    app = Celery("beat_test", broker="memory://", set_as_current=False)

    @app.task(name="beat_test.report", shared=False)
    def report(*args: Any, **kwargs: Any) -> None: ...

    app.conf.task_routes = {"beat_test.cleanup": {"queue": "maintenance"}}

    @app.task(name="beat_test.cleanup", shared=False)
    def cleanup() -> None: ...

    yield app


class Jittered(schedule):  # type: ignore[misc]
    """A schedule class of one's own: Coda cannot know when it is due."""


def one(app: Celery, entry: dict[str, Any]) -> Any:
    app.conf.beat_schedule = {"the entry": entry}
    (scheduled,) = beat_schedules(app)
    return scheduled


CRONTABS = [
    crontab(),
    crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
    crontab(minute=0, hour=0, day_of_month="1,15"),
    crontab(minute=30, hour=3, month_of_year="jan,jul"),
    crontab(minute="5,35", hour="*/6", day_of_week="sun"),
]


@pytest.mark.parametrize("entry", CRONTABS, ids=str)
def test_a_crontab_ticks_when_celery_would_run_it(app: Celery, entry: crontab) -> None:
    entry.app = app
    timetable = Cron(cron_expression(entry))
    rng = random.Random(7)
    for _ in range(200):
        minute = datetime(2026, 1, 1, tzinfo=UTC).timestamp() + rng.randrange(525_600) * 60
        start, delta, _ = entry.remaining_delta(datetime.fromtimestamp(minute, UTC))
        assert timetable.next_after(minute) == (start + delta).timestamp()


def test_a_crontab_keeps_the_apps_time_zone(app: Celery) -> None:
    app.conf.timezone = "Europe/Paris"
    scheduled = one(app, {"task": "beat_test.report", "schedule": crontab(minute=0, hour=9)})
    assert scheduled.timetable == Cron("0 9 * * *", "Europe/Paris")
    assert scheduled.name == "beat:the-entry" and scheduled.target == "beat_test.report"


@pytest.mark.parametrize(
    "when", [10, 10.0, timedelta(seconds=10), schedule(timedelta(seconds=10))], ids=repr
)
def test_intervals_become_epoch_anchored_intervals(app: Celery, when: object) -> None:
    assert one(app, {"task": "beat_test.report", "schedule": when}).timetable == Every(10)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            {"task": "beat_test.report", "schedule": Jittered(timedelta(seconds=10))},
            "is a Jittered schedule: Coda runs crontab and interval schedules only",
        ),
        (
            {"task": "beat_test.report", "schedule": crontab(day_of_month=1, day_of_week=1)},
            "restricts both day_of_month and day_of_week",
        ),
        (
            {"task": "elsewhere.task", "schedule": 10},
            "runs 'elsewhere.task', which is not a task of that app",
        ),
        ({"task": "beat_test.report", "schedule": 0.1}, "at least 1 second"),
        ({"schedule": 10}, "must be a dict with 'task' and 'schedule'"),
    ],
)
def test_entries_coda_cannot_run_as_celery_would_are_refused_in_one_line(
    app: Celery, entry: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as refused:
        one(app, entry)
    assert "beat_schedule['the entry'] of the Celery app beat_test" in str(refused.value)
    assert "\n" not in str(refused.value)


def test_two_entries_with_one_schedule_name_are_refused(app: Celery) -> None:
    app.conf.beat_schedule = {
        "nightly report": {"task": "beat_test.report", "schedule": 60},
        "nightly-report": {"task": "beat_test.report", "schedule": 60},
    }
    with pytest.raises(
        ConfigurationError, match="both make the schedule name 'beat:nightly-report'"
    ):
        beat_schedules(app)


def test_a_tick_submits_the_message_celery_beat_would_send(app: Celery) -> None:
    scheduled = one(
        app,
        {
            "task": "beat_test.report",
            "schedule": 60,
            "args": (1, BeatLazyFunc(lambda: "lazy")),
            "kwargs": {"region": "eu"},
            "options": {"queue": "reports", "headers": {"h": 1}, "countdown": 30},
        },
    )
    run_id = tick_run_id(scheduled.name, 1_800_000_000)

    class NoRouting:  # a router installed in the supervisor's process must not be used
        def send(self, *args: Any) -> Any:
            raise AssertionError("a tick went through app.send_task's hook")

    hook_for(app).router = NoRouting()  # type: ignore[assignment]
    before = time.time()
    request = scheduled.request(run_id)
    message = CeleryMessage.from_envelope(request.args[ENVELOPE])
    assert message.task_id == run_id and message.name == "beat_test.report"
    assert message.decode(None)[:2] == ([1, "lazy"], {"region": "eu"})
    assert message.headers["celery_beat_task"] is True and message.headers["h"] == 1
    assert request.queue == "reports"
    assert request.not_before is not None and before + 29 <= request.not_before <= time.time() + 31


def test_a_tick_goes_to_the_tasks_own_queue(app: Celery) -> None:
    cleanup = one(app, {"task": "beat_test.cleanup", "schedule": 60})
    assert cleanup.request("r").queue == "maintenance"
    report = one(app, {"task": "beat_test.report", "schedule": 60})
    assert report.request("r").queue == "default"  # Celery's default queue is Coda's


def test_adopting_registers_the_beat_schedule_only_when_asked(app: Celery) -> None:
    app.conf.beat_schedule = {"adopted entry": {"task": "beat_test.report", "schedule": 60}}
    adopt(app)
    assert "beat:adopted-entry" not in {s.name for s in registry.all_schedules()}
    adopt(app, beat=True)
    assert "beat:adopted-entry" in {s.name for s in registry.all_schedules()}
