"""The supervisor's scheduler on the engine, a store and a hand-driven clock:
each tick submitted once, restarts, and what happens to missed ticks."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from coda.errors import ConfigurationError
from coda.messages import RunTask
from coda.schedules import Every, Missed, Schedule, TickRequest, fixed_args, tick_run_id
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine
from coda.supervisor.scheduler import MAX_CATCH_UP, Scheduler
from coda.supervisor.stores.base import ScheduleMark, Store
from coda.supervisor.stores.memory import MemoryStore
from tests.unit.engine_fakes import lookup, make_engine, sent, worker

MINUTE = 60.0
START = 1_000_020.0  # a whole minute of the ManualClock's epoch


def every_minute(missed: Missed = "latest", name: str = "every-minute") -> Schedule:
    return Schedule(
        name=name,
        target="t",
        timetable=Every(MINUTE),
        request=fixed_args({}),
        missed=missed,
        origin="test",
    )


class Generation:
    """One supervisor's engine and scheduler on a shared store."""

    def __init__(self, clock: ManualClock, store: Store, schedules: Sequence[Schedule]) -> None:
        self.engine: Engine = make_engine(clock, store)
        self.engine.recover()
        self.scheduler = Scheduler(schedules, clock, store, self.engine.submit, lookup)
        self.scheduler.start()
        clock.settle()

    def stop(self) -> None:
        self.scheduler.stop()


def tick_runs(store: Store) -> list[str]:
    """Every run submitted, by id, oldest first."""
    return sorted(job.id for job in store.list_runs(state=None, name="t", since=None, limit=1000))


def ids(*ticks: float, name: str = "every-minute") -> list[str]:
    return [tick_run_id(name, tick) for tick in ticks]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(now=START + 0.5)


def test_each_tick_is_submitted_once_at_its_time_under_its_tick_id(clock: ManualClock) -> None:
    store = MemoryStore()
    sup = Generation(clock, store, [every_minute()])
    w = worker(sup.engine, 1, tasks=10)
    assert tick_runs(store) == []  # a new schedule counts from now: nothing missed
    clock.advance(MINUTE - 0.5 - 0.001)
    assert tick_runs(store) == []
    clock.advance(0.001)
    assert tick_runs(store) == ids(START + MINUTE)
    clock.advance(2 * MINUTE)
    expected = ids(START + MINUTE, START + 2 * MINUTE, START + 3 * MINUTE)
    assert tick_runs(store) == expected
    assert [m.job_id for m in sent(w) if isinstance(m, RunTask)] == expected


def test_a_restart_submits_no_tick_twice_and_goes_on_with_the_next(clock: ManualClock) -> None:
    store = MemoryStore()
    first = Generation(clock, store, [every_minute()])
    clock.advance(2 * MINUTE)
    first.stop()
    before = tick_runs(store)
    assert before == ids(START + MINUTE, START + 2 * MINUTE)
    clock.advance(1.0)  # restarted within the same minute: nothing was missed
    Generation(clock, store, [every_minute()])
    assert tick_runs(store) == before
    clock.advance(MINUTE)
    assert tick_runs(store) == [*before, *ids(START + 3 * MINUTE)]


def test_by_default_the_latest_missed_tick_runs_once(clock: ManualClock) -> None:
    store = MemoryStore()
    first = Generation(clock, store, [every_minute()])
    clock.advance(MINUTE)
    first.stop()
    clock.advance(10 * MINUTE)  # down: ten ticks went by
    second = Generation(clock, store, [every_minute()])
    assert tick_runs(store) == ids(START + MINUTE, START + 11 * MINUTE)
    (status,) = second.scheduler.status()
    assert (status["missed_run"], status["missed_skipped"]) == (1, 9)
    assert status["last_run_id"] == tick_run_id("every-minute", START + 11 * MINUTE)
    assert status["next"] == START + 12 * MINUTE
    clock.advance(MINUTE)
    assert tick_runs(store)[-1] == tick_run_id("every-minute", START + 12 * MINUTE)


def test_catching_up_on_all_missed_ticks_runs_each_once_oldest_first(clock: ManualClock) -> None:
    store = MemoryStore()
    first = Generation(clock, store, [every_minute("all")])
    clock.advance(MINUTE)
    first.stop()
    clock.advance(3 * MINUTE)
    Generation(clock, store, [every_minute("all")])
    assert tick_runs(store) == ids(*(START + n * MINUTE for n in range(1, 5)))


def test_catching_up_on_all_is_bounded_to_the_newest(clock: ManualClock) -> None:
    store = MemoryStore()
    Generation(clock, store, [every_minute("all")]).stop()
    clock.advance(150 * MINUTE)
    sup = Generation(clock, store, [every_minute("all")])
    newest = START + 150 * MINUTE
    expected = ids(*(newest - n * MINUTE for n in range(MAX_CATCH_UP - 1, -1, -1)))
    assert tick_runs(store) == expected
    (status,) = sup.scheduler.status()
    assert (status["missed_run"], status["missed_skipped"]) == (MAX_CATCH_UP, 50)


def test_skip_runs_no_missed_tick_but_the_next_on_time(clock: ManualClock) -> None:
    store = MemoryStore()
    Generation(clock, store, [every_minute("skip")]).stop()
    clock.advance(5 * MINUTE)
    Generation(clock, store, [every_minute("skip")])
    assert tick_runs(store) == []
    clock.advance(MINUTE)
    assert tick_runs(store) == ids(START + 6 * MINUTE)


def test_a_schedule_known_before_a_downtime_without_a_tick_still_catches_up(
    clock: ManualClock,
) -> None:
    """Its first supervisor stopped before its first tick: the mark says the
    schedule existed, so the tick that went by meanwhile is missed, not new."""
    store = MemoryStore()
    Generation(clock, store, [every_minute()]).stop()
    clock.advance(2 * MINUTE)
    Generation(clock, store, [every_minute()])
    assert tick_runs(store) == ids(START + 2 * MINUTE)


def test_a_late_timer_submits_the_latest_due_tick_only(clock: ManualClock) -> None:
    store = MemoryStore()
    sup = Generation(clock, store, [every_minute()])
    clock.now += 3 * MINUTE  # the loop was stalled: the timer fires three ticks late
    clock.advance(0)
    assert tick_runs(store) == ids(START + 3 * MINUTE)
    assert sup.scheduler.status()[0]["missed_skipped"] == 2


def test_two_supervisors_on_one_store_make_one_run_of_a_tick(clock: ManualClock) -> None:
    """A fleet: both submit the tick under the same run id; one run results."""
    store = MemoryStore()
    Generation(clock, store, [every_minute()])
    Generation(clock, store, [every_minute()])
    clock.advance(MINUTE)
    assert tick_runs(store) == ids(START + MINUTE)


def test_marks_are_saved_with_each_tick(clock: ManualClock) -> None:
    store = MemoryStore()
    Generation(clock, store, [every_minute()])
    assert store.schedule_marks() == {"every-minute": ScheduleMark(covered=START + 0.5)}
    clock.advance(MINUTE)
    tick = START + MINUTE
    assert store.schedule_marks() == {"every-minute": ScheduleMark(tick, last_tick=tick)}


def test_a_schedule_whose_request_fails_does_not_stop_the_others(clock: ManualClock) -> None:
    def broken(run_id: str) -> TickRequest:
        raise RuntimeError("cannot build")

    store = MemoryStore()
    bad = Schedule("bad", "t", Every(MINUTE), broken, origin="test")
    sup = Generation(clock, store, [bad, every_minute()])
    clock.advance(2 * MINUTE)
    assert tick_runs(store) == ids(START + MINUTE, START + 2 * MINUTE)
    statuses = {s["name"]: s for s in sup.scheduler.status()}
    assert statuses["bad"]["refused"] == 2 and statuses["bad"]["next"] == START + 3 * MINUTE


def test_a_refused_tick_is_counted_and_the_schedule_goes_on(clock: ManualClock) -> None:
    """The engine refuses a payload it does not accept (here, JSON): the
    refusal is counted, and later ticks are still submitted."""
    store = MemoryStore()
    as_json = Schedule("json", "t", Every(MINUTE), fixed_args({}), serializer="json")
    sup = Generation(clock, store, [as_json])
    clock.advance(2 * MINUTE)
    assert tick_runs(store) == []
    (status,) = sup.scheduler.status()
    assert status["refused"] == 2 and status["next"] == START + 3 * MINUTE


def test_a_schedule_of_an_unknown_name_is_refused_at_start(clock: ManualClock) -> None:
    stray = Schedule("stray", "nope", Every(MINUTE), fixed_args({}), origin="beat entry 'x'")
    with pytest.raises(ConfigurationError, match="beat entry 'x': .*'nope'"):
        Scheduler([stray], clock, MemoryStore(), make_engine(clock).submit, lookup)


def test_stop_arms_no_more_ticks(clock: ManualClock) -> None:
    store = MemoryStore()
    sup = Generation(clock, store, [every_minute()])
    sup.stop()
    clock.advance(5 * MINUTE)
    assert tick_runs(store) == []
    assert clock.pending_timers == 0
