"""Schedules: a task or workflow that runs by itself, on a cron or an interval.

A ``Schedule`` names a registered task or workflow, its ``Timetable`` (when
it ticks) and what each tick submits. ``@coda.task(schedule=...)`` and
``@coda.workflow(schedule=...)`` register one per function; the Celery
bridge registers the entries of an app's ``beat_schedule``. The supervisor
runs them (``coda.supervisor.scheduler``); this module only says when ticks
fall and what they carry, so it is pure.

Timetables:

- ``Cron``: a cron expression, parsed and evaluated by ``cronsim``: five
  fields (minute hour day-of-month month day-of-week) or six with seconds
  first, in a time zone (UTC by default; DST as Debian's cron handles it).
- ``Every``: a fixed interval, anchored at the Unix epoch, so every
  supervisor, before and after a restart, agrees on the ticks (an hourly
  interval ticks on the hour, UTC) without remembering when it started.

Each tick is named by its run id, ``NAME@2026-11-29T06:55:00Z`` (the
schedule's name and the tick's time in UTC): submitting it twice, from a
restarted supervisor or from two supervisors of a fleet, makes one run.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

from .errors import CodaError, ConfigurationError
from .serialization import DEFAULT_SERIALIZER
from .serialization import registry as serializers

__all__ = [
    "MISSED_POLICIES",
    "Cron",
    "Every",
    "Missed",
    "Schedule",
    "TickRequest",
    "Timetable",
    "declared_schedule",
    "fixed_args",
    "tick_run_id",
    "timetable_for",
]

Missed = Literal["latest", "all", "skip"]
MISSED_POLICIES: tuple[Missed, ...] = ("latest", "all", "skip")


class Timetable(Protocol):
    """When a schedule ticks. Times are epoch seconds."""

    def next_after(self, moment: float) -> float:
        """The first tick strictly after ``moment``."""
        ...

    def ticks_back(self, until: float, after: float, limit: int) -> list[float]:
        """Ticks in ``(after, until]``, newest first, at most ``limit``."""
        ...

    def describe(self) -> str:
        """How a person would write it (``*/5 * * * *``, ``every 30s``)."""
        ...


@dataclass(frozen=True)
class Cron:
    """A cron expression in a time zone; invalid ones raise ``ValueError``."""

    expression: str
    timezone: str = "UTC"
    _zone: tzinfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            zone: tzinfo = UTC if self.timezone == "UTC" else ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {self.timezone!r}") from None
        object.__setattr__(self, "_zone", zone)
        try:
            CronSim(self.expression, datetime.now(zone))
        except (CronSimError, ValueError, TypeError, AttributeError) as exc:
            raise ValueError(
                f"not a valid cron expression ({exc}): write five fields, "
                "minute hour day-of-month month day-of-week, or six with seconds first"
            ) from None

    def _at(self, moment: float) -> datetime:
        return datetime.fromtimestamp(moment, self._zone)

    def next_after(self, moment: float) -> float:
        # cronsim iterates from whole seconds, strictly after the one it is given
        return next(CronSim(self.expression, self._at(math.floor(moment)))).timestamp()

    def ticks_back(self, until: float, after: float, limit: int) -> list[float]:
        ticks: list[float] = []
        # reversed, cronsim gives the ticks strictly before the second it starts at
        for moment in CronSim(self.expression, self._at(math.floor(until) + 1), reverse=True):
            tick = moment.timestamp()
            if tick <= after or len(ticks) >= limit:
                break
            ticks.append(tick)
        return ticks

    def describe(self) -> str:
        zone = "" if self.timezone == "UTC" else f" ({self.timezone})"
        return f"{self.expression}{zone}"


@dataclass(frozen=True)
class Every:
    """Every ``seconds``, at the multiples of ``seconds`` since the epoch."""

    seconds: float

    def __post_init__(self) -> None:
        if not (isinstance(self.seconds, int | float) and math.isfinite(self.seconds)):
            raise ValueError(f"an interval must be a number of seconds, got {self.seconds!r}")
        if self.seconds < 1:
            raise ValueError(f"an interval must be at least 1 second, got {self.seconds!r}")

    def next_after(self, moment: float) -> float:
        return (math.floor(moment / self.seconds) + 1) * self.seconds

    def ticks_back(self, until: float, after: float, limit: int) -> list[float]:
        newest = math.floor(until / self.seconds)
        oldest = math.floor(after / self.seconds) + 1
        return [n * self.seconds for n in range(newest, max(oldest, newest - limit + 1) - 1, -1)]

    def describe(self) -> str:
        return f"every {_seconds(self.seconds)}"


def _seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def timetable_for(when: str | timedelta | Timetable, timezone: str = "UTC") -> Timetable:
    """A cron expression (in ``timezone``), a ``timedelta`` or a timetable;
    ``ValueError`` says what is wrong with anything else."""
    if isinstance(when, str):
        return Cron(when, timezone)
    if isinstance(when, timedelta):
        return Every(when.total_seconds())
    if isinstance(when, Cron | Every):
        return when
    raise ValueError(
        f"a schedule is a cron expression (a string) or a datetime.timedelta, not {when!r}"
    )


@dataclass(frozen=True)
class TickRequest:
    """What one tick submits: keyword arguments, and optionally a queue
    other than the target's and a time before which it must not start."""

    args: Mapping[str, Any]
    queue: str | None = None
    not_before: float | None = None


@dataclass(frozen=True)
class _FixedArgs:
    args: Mapping[str, Any]

    def __call__(self, run_id: str) -> TickRequest:
        return TickRequest(self.args)


def fixed_args(args: Mapping[str, Any]) -> Callable[[str], TickRequest]:
    """The request of a schedule whose ticks all pass the same arguments."""
    return _FixedArgs(dict(args))


@dataclass(frozen=True)
class Schedule:
    """A registered task or workflow run by the supervisor at every tick.

    ``request(run_id)`` builds what a tick submits (the Celery bridge puts
    the tick's id in the Celery message it builds); ``missed`` says what a
    supervisor starting after ticks went by does with them: run the latest
    once (the default), run ``all`` (the most recent ``MAX_CATCH_UP``), or
    ``skip`` them; ``origin`` says where it was declared, for messages."""

    name: str
    target: str
    timetable: Timetable
    request: Callable[[str], TickRequest]
    missed: Missed = "latest"
    serializer: str | None = None
    origin: str = ""


def tick_run_id(name: str, tick: float) -> str:
    """The run id of a schedule's tick: the same wherever it is computed."""
    seconds, millis = divmod(round(tick * 1000), 1000)
    moment = datetime.fromtimestamp(seconds, UTC)
    fraction = f".{millis:03d}" if millis else ""
    return f"{name}@{moment:%Y-%m-%dT%H:%M:%S}{fraction}Z"


def declared_schedule(
    fn: Callable[..., Any],
    name: str,
    kind: str,
    *,
    when: str | timedelta | None,
    args: Mapping[str, Any] | None,
    missed: Missed,
    timezone: str,
    serializer: str | None,
) -> Schedule | None:
    """The schedule of ``@coda.task(schedule=...)`` / ``@coda.workflow(...)``,
    checked at import: a bad expression, policy, time zone or argument
    raises ``ConfigurationError`` naming the function."""
    where = f"@coda.{kind} {name}"
    if when is None:
        if args is not None:
            raise ConfigurationError(f"{where}: schedule_args= needs schedule= too")
        return None
    if missed not in MISSED_POLICIES:
        choices = ", ".join(repr(p) for p in MISSED_POLICIES)
        raise ConfigurationError(f"{where}: schedule_missed={missed!r} is not one of {choices}")
    try:
        timetable = timetable_for(when, timezone)
    except ValueError as exc:
        raise ConfigurationError(f"{where}: schedule={when!r}: {exc}") from None
    return Schedule(
        name=name,
        target=name,
        timetable=timetable,
        request=fixed_args(_checked_args(fn, where, args or {}, serializer)),
        missed=missed,
        serializer=serializer,
        origin=where,
    )


def _checked_args(
    fn: Callable[..., Any], where: str, args: object, serializer: str | None
) -> Mapping[str, Any]:
    """The arguments every tick passes: keywords the function takes, that
    its serializer can encode."""
    if not isinstance(args, Mapping) or not all(isinstance(k, str) for k in args):
        raise ConfigurationError(
            f"{where}: schedule_args must be a mapping of keyword arguments, got {args!r}"
        )
    try:
        inspect.signature(fn).bind(**args)
    except TypeError as exc:
        raise ConfigurationError(
            f"{where}: schedule_args do not fit its parameters: {exc}"
        ) from None
    try:
        serializers.dumps(dict(args), serializer or DEFAULT_SERIALIZER)
    except CodaError as exc:
        raise ConfigurationError(f"{where}: schedule_args cannot be encoded: {exc}") from None
    return args
