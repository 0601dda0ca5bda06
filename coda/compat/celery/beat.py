"""A Celery app's ``beat_schedule``, run by the supervisor (``--celery-beat``).

``beat_schedules(app)`` reads ``app.conf.beat_schedule`` once, at the
boundary, into ``coda.schedules.Schedule`` values that ``adopt`` registers
(``coda.registry.register_schedule``); the supervisor then runs them like
any schedule: each tick once, under a run id made of the entry's name and
the tick's time, also across restarts and on a fleet.

- **When.** A ``crontab`` becomes the cron expression of its fields, in the
  app's ``timezone``. A ``schedule(timedelta)``, a ``timedelta`` or a number
  of seconds becomes an interval: Celery counts it from the entry's last
  run, Coda from the Unix epoch (every 10 s is at :00, :10, ...), so that
  every supervisor agrees on the ticks without remembering anything.
- **What.** Each tick builds the message ``celery beat`` would send (the
  entry's ``args`` and ``kwargs``, lazy ones evaluated, its ``options`` over
  the task's own, the ``celery_beat_task`` header), with the tick's run id
  as its task id, and submits it as a job of the adopted task: the contract
  of ``.delay()`` routed to Coda (``message``). A ``queue`` option names the
  Coda queue, as ``--queues`` does; ``countdown``/``eta`` hold the run back.
- **Missed ticks.** The latest one runs once when the supervisor starts, as
  a ``celery beat`` that was down does.
- **Refused, in one line at start**, rather than run differently: a
  ``solar`` schedule or a schedule class of one's own; a ``crontab`` that
  restricts both ``day_of_month`` and ``day_of_week`` (Celery runs it on
  days matching both, cron on days matching either); a task the app does
  not have (an entry for another service's task).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from celery.beat import BeatLazyFunc
from celery.schedules import crontab, maybe_schedule, schedule, solar

from coda.errors import ConfigurationError
from coda.schedules import Cron, Every, Schedule, TickRequest, Timetable

from .hook import hook_for
from .message import CeleryMessage
from .producer import MessageProducer
from .routing import message_queue

__all__ = ["BEAT_PREFIX", "beat_schedules", "cron_expression"]

BEAT_PREFIX = "beat:"

# (attribute, its every value): the fields of a crontab, in cron's order
_FIELDS = (
    ("minute", range(60)),
    ("hour", range(24)),
    ("day_of_month", range(1, 32)),
    ("month_of_year", range(1, 13)),
    ("day_of_week", range(7)),  # 0 is Sunday, in Celery as in cron
)


def beat_schedules(app: Any) -> list[Schedule]:
    """The app's ``beat_schedule`` entries as schedules; a bad one raises
    ``ConfigurationError`` naming it and saying what to do."""
    entries = app.conf.beat_schedule or {}
    schedules: dict[str, Schedule] = {}
    for key, entry in entries.items():
        where = f"beat_schedule[{key!r}] of the Celery app {app.main or app}"
        scheduled = _schedule(app, str(key), entry, where)
        clash = schedules.get(scheduled.name)
        if clash is not None:
            raise ConfigurationError(
                f"{where} and {clash.origin} both make the schedule name {scheduled.name!r} "
                "(spaces become dashes): rename one of them"
            )
        schedules[scheduled.name] = scheduled
    return list(schedules.values())


def _schedule(app: Any, key: str, entry: object, where: str) -> Schedule:
    if not isinstance(entry, Mapping) or "task" not in entry or "schedule" not in entry:
        raise ConfigurationError(f"{where} must be a dict with 'task' and 'schedule'")
    name = str(entry["task"])
    task = app.tasks.get(name)
    if task is None:
        raise ConfigurationError(
            f"{where} runs {name!r}, which is not a task of that app, so no Coda worker can "
            "run it: leave this entry to a celery beat of its own, or remove it"
        )
    return Schedule(
        name=BEAT_PREFIX + re.sub(r"\s+", "-", key.strip()),
        target=name,
        timetable=_timetable(app, entry, where),
        request=_BeatTick(app, task, entry),
        missed="latest",
        origin=where,
    )


def _timetable(app: Any, entry: Mapping[str, Any], where: str) -> Timetable:
    when = maybe_schedule(entry["schedule"], bool(entry.get("relative", False)), app)
    try:
        if isinstance(when, crontab):
            zone = app.timezone
            return Cron(cron_expression(when), getattr(zone, "key", None) or str(zone))
        if isinstance(when, timedelta):
            return Every(when.total_seconds())
        if type(when) is schedule:
            return Every(when.run_every.total_seconds())
    except ValueError as exc:
        raise ConfigurationError(f"{where}: {exc}") from None
    what = "a solar schedule" if isinstance(when, solar) else f"a {type(when).__name__} schedule"
    raise ConfigurationError(
        f"{where} is {what}: Coda runs crontab and interval schedules only; "
        "leave this entry to a celery beat of its own"
    )


def cron_expression(entry: crontab) -> str:
    """The five cron fields of a crontab, from the sets Celery expanded."""
    fields = []
    for attribute, every in _FIELDS:
        values = sorted(getattr(entry, attribute))
        fields.append("*" if values == list(every) else ",".join(map(str, values)))
    if fields[2] != "*" and fields[4] != "*":
        raise ValueError(
            "a crontab that restricts both day_of_month and day_of_week runs on days "
            "matching both in Celery, either in cron: split it into two entries"
        )
    return " ".join(fields)


class _BeatTick:
    """Builds the message of one tick, as ``celery beat`` would send it."""

    def __init__(self, app: Any, task: Any, entry: Mapping[str, Any]) -> None:
        self._app = app
        self._task = task
        self._args = list(entry.get("args") or ())
        self._kwargs = dict(entry.get("kwargs") or {})
        self._options = dict(entry.get("options") or {})

    def __call__(self, run_id: str) -> TickRequest:
        captured: list[CeleryMessage] = []
        options = {**self._task._get_exec_options(), **self._options}
        options["headers"] = {**(options.get("headers") or {}), "celery_beat_task": True}
        hook_for(self._app).original(  # not the hook: this is the supervisor, not a producer
            self._task.name,
            [_evaluated(v) for v in self._args],
            {k: _evaluated(v) for k, v in self._kwargs.items()},
            task_id=run_id,
            producer=MessageProducer(captured.append),
            task_type=self._task,
            **options,
        )
        (message,) = captured
        return TickRequest(message.to_job_args(), message_queue(self._app, message), message.eta)


def _evaluated(value: Any) -> Any:
    return value() if isinstance(value, BeatLazyFunc) else value
