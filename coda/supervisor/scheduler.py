"""Running the schedules: each tick submitted once, also across restarts.

Sans-I/O, like the engine: timers come from the engine's ``Clock``, marks go
to the ``Store``, and a tick is submitted exactly as a client would submit
it (``Engine.submit``), under the tick's run id
(``coda.schedules.tick_run_id``). A submit of an existing run id is
idempotent, so a tick submitted twice (two supervisors of a fleet, a
restart that lost its last mark) is one run.

Theory of operation. Each schedule has a *mark* in the store: every tick at
or before ``covered`` has been submitted or deliberately skipped.

- ``start()``: the ticks in ``(covered, now]`` went by while no supervisor
  ran the schedule. Its ``missed`` policy decides: ``"latest"`` (the
  default) submits the newest of them once, ``"all"`` submits them, oldest
  first, at most the ``MAX_CATCH_UP`` newest, ``"skip"`` submits none. A
  schedule seen for the first time has nothing missed: its mark starts now.
- At each tick's timer, the ticks in ``(covered, now]`` are due: the one the
  timer was armed for, or, after a stall (a paused machine, a busy loop),
  several; the newest runs (every one with ``"all"``): a tick on time is
  never "missed".
- A tick's run and its mark are saved in the same turn, so they land in the
  same commit: after a crash both are in the store or neither is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .._outcome import encode_value
from ..errors import CodaError, ConfigurationError
from ..messages import Error, Message, Submit
from ..schedules import Missed, Schedule, tick_run_id
from ..serialization import DEFAULT_SERIALIZER
from .clock import Clock, Timer
from .peers import NameInfo, Peer
from .stores.base import ScheduleMark, Store

__all__ = ["COUNT_LIMIT", "MAX_CATCH_UP", "Scheduler", "chosen_ticks"]

log = logging.getLogger("coda.scheduler")

MAX_CATCH_UP = 100  # missed ticks "all" submits at most (the newest)
COUNT_LIMIT = 1000  # missed ticks counted, at most (status)


def chosen_ticks(due: Sequence[float], policy: Missed) -> list[float]:
    """Which of the due ticks (newest first) to submit, oldest first."""
    keep = {"latest": 1, "all": MAX_CATCH_UP, "skip": 0}[policy]
    return sorted(due[:keep])


@dataclass(eq=False)
class _Running:
    """One schedule in this supervisor: its mark, its timer, its counts."""

    schedule: Schedule
    covered: float
    last_tick: float | None = None
    next_tick: float | None = None
    timer: Timer | None = None
    missed_run: int = 0
    missed_skipped: int = 0
    refused: int = 0

    def status(self) -> dict[str, Any]:
        schedule = self.schedule
        last = self.last_tick
        return {
            "name": schedule.name,
            "target": schedule.target,
            "schedule": schedule.timetable.describe(),
            "missed": schedule.missed,
            "origin": schedule.origin,
            "next": self.next_tick,
            "last": last,
            "last_run_id": None if last is None else tick_run_id(schedule.name, last),
            "missed_run": self.missed_run,
            "missed_skipped": self.missed_skipped,
            "refused": self.refused,
        }


class _TickPeer:
    """Where the engine answers a tick's submit: refusals are logged."""

    def __init__(self, running: _Running, run_id: str) -> None:
        self._running = running
        self._run_id = run_id

    @property
    def is_open(self) -> bool:
        return True

    def send(self, message: Message) -> None:
        if isinstance(message, Error):
            self._running.refused += 1
            log.warning(
                "schedule %s: tick %s was refused: %s",
                self._running.schedule.name,
                self._run_id,
                message.message,
            )


class Scheduler:
    """The schedules of one supervisor; ``start()`` once the loop runs."""

    def __init__(
        self,
        schedules: Sequence[Schedule],
        clock: Clock,
        store: Store,
        submit: Callable[[Peer, Submit], None],
        lookup: Callable[[str], NameInfo],
    ) -> None:
        for schedule in schedules:
            try:
                lookup(schedule.target)
            except CodaError as exc:
                raise ConfigurationError(f"{schedule.origin}: {exc}") from None
        self._schedules = list(schedules)
        self._clock = clock
        self._store = store
        self._submit = submit
        self._running: list[_Running] = []

    def start(self) -> None:
        if not self._schedules:
            return
        marks = self._store.schedule_marks()
        now = self._clock.time()
        for schedule in self._schedules:
            mark = marks.get(schedule.name)
            if mark is None:  # new: its ticks count from now
                running = _Running(schedule, covered=now)
                self._save_mark(running)
            else:
                running = _Running(schedule, mark.covered, last_tick=mark.last_tick)
                self._catch_up(running, now)
            self._running.append(running)
            self._arm(running)
            log.info(
                "schedule %s (%s): next tick %s",
                schedule.name,
                schedule.timetable.describe(),
                tick_run_id(schedule.name, running.next_tick or now),
            )

    def stop(self) -> None:
        """No tick from now on (the supervisor drains); marks stay as saved."""
        for running in self._running:
            if running.timer is not None:
                running.timer.cancel()
                running.timer = None
            running.next_tick = None

    def status(self) -> list[dict[str, Any]]:
        return [running.status() for running in self._running]

    # -- ticks -------------------------------------------------------------

    def _catch_up(self, running: _Running, now: float) -> None:
        """The ticks that went by while no supervisor ran this schedule."""
        schedule = running.schedule
        missed = schedule.timetable.ticks_back(now, running.covered, COUNT_LIMIT)
        run = chosen_ticks(missed, schedule.missed)
        running.missed_run += len(run)
        running.missed_skipped += len(missed) - len(run)
        if missed:
            log.info(
                "schedule %s: %s%d ticks went by while it was not running; %d submitted (%s)",
                schedule.name,
                "at least " if len(missed) >= COUNT_LIMIT else "",
                len(missed),
                len(run),
                schedule.missed,
            )
        self._fire(running, run, covered=now)

    def _due(self, running: _Running, tick: float) -> None:
        running.timer = None
        now = max(self._clock.time(), tick)  # a timer may fire a hair early
        due = running.schedule.timetable.ticks_back(now, running.covered, COUNT_LIMIT)
        policy: Missed = "all" if running.schedule.missed == "all" else "latest"
        run = chosen_ticks(due, policy)
        if len(due) > len(run):
            running.missed_skipped += len(due) - len(run)
            log.warning(
                "schedule %s: %d ticks came due at once (the supervisor was paused or busy); "
                "only the latest is submitted",
                running.schedule.name,
                len(due),
            )
        self._fire(running, run, covered=now)
        self._arm(running)

    def _fire(self, running: _Running, ticks: Sequence[float], covered: float) -> None:
        for tick in ticks:
            self._submit_tick(running, tick)
            running.last_tick = tick
        running.covered = max(running.covered, covered)
        self._save_mark(running)

    def _submit_tick(self, running: _Running, tick: float) -> None:
        """Submit one tick; a schedule whose request cannot be built is
        logged and counted, and never stops the others."""
        schedule = running.schedule
        run_id = tick_run_id(schedule.name, tick)
        try:
            request = schedule.request(run_id)
            args = encode_value(dict(request.args), schedule.serializer or DEFAULT_SERIALIZER)
        except Exception:
            running.refused += 1
            log.exception("schedule %s: tick %s could not be built", schedule.name, run_id)
            return
        message = Submit(
            req_id=0,
            name=schedule.target,
            args=args,
            run_id=run_id,
            queue=request.queue,
            not_before=request.not_before,
        )
        self._submit(_TickPeer(running, run_id), message)

    def _arm(self, running: _Running) -> None:
        start = max(self._clock.time(), running.covered)
        tick = running.schedule.timetable.next_after(start)
        running.next_tick = tick
        running.timer = self._clock.call_at(tick, lambda: self._due(running, tick))

    def _save_mark(self, running: _Running) -> None:
        mark = ScheduleMark(covered=running.covered, last_tick=running.last_tick)
        self._store.save_schedule_mark(running.schedule.name, mark)
