"""Rate limits: a task whose name has a ``min_interval`` is sent to a
worker at most once per interval (per supervisor, like one Celery worker).
One found ready too early is given a start time, the interval after the
previous one, and handed back to the engine (``on_rate_limited``), which
holds it until then: a burst of N such tasks starts at 0, i, 2i ... without
anyone polling, while other tasks keep flowing past them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from ..errors import CodaError
from .clock import Clock
from .jobs import Job

__all__ = ["RateLimits"]

FORGET_AT = 10_000  # given starts kept before those of jobs gone are dropped


class _Limited(Protocol):
    @property
    def min_interval(self) -> float | None: ...


class RateLimits:
    """The next free start of each rate-limited name, and the starts given."""

    def __init__(
        self,
        lookup: Callable[[str], _Limited],
        clock: Clock,
        live: Mapping[str, Job],
        on_rate_limited: Callable[[Job, float], None],
    ) -> None:
        self._lookup = lookup
        self._clock = clock
        self._live = live
        self._on_rate_limited = on_rate_limited
        self._next_start: dict[str, float] = {}  # rate-limited name -> its next free start
        self._start_at: dict[str, float] = {}  # job id -> the start it was given

    def admit(self, job: Job) -> bool:
        """Whether a task may start now under its name's rate limit; if not,
        it is handed to ``on_rate_limited`` with the start it was given."""
        try:
            interval = self._lookup(job.name).min_interval
        except CodaError:
            return True
        if interval is None:
            return True
        now = self._clock.time()
        given = self._start_at.pop(job.id, None)
        if given is not None and given <= now:
            return True
        free = self._next_start.get(job.name, 0.0)
        if given is None and free <= now:
            self._next_start[job.name] = now + interval
            return True
        start = given if given is not None else free
        if given is None:
            self._next_start[job.name] = free + interval
        if len(self._start_at) > FORGET_AT:  # forget the starts of jobs cancelled meanwhile
            self._start_at = {i: t for i, t in self._start_at.items() if i in self._live}
        self._start_at[job.id] = start
        self._on_rate_limited(job, start)
        return False
