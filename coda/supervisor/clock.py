"""Time and deferral for the I/O-free parts of the supervisor.

The engine, the stores' buffering and the broker never read the system clock
and never touch the event loop themselves. They are given a ``Clock`` and
ask it three things: what time it is, to call them back at a given time, and
to call them back soon, after the current message has been handled
(``defer``; ``defer_threadsafe`` from another thread, such as a store's
commit thread). The supervisor passes a ``LoopClock`` (wall clock, the
running asyncio loop); unit tests pass a ``ManualClock`` they drive by hand,
so retries, timeouts, ETAs, TTLs and group commits are tested without real
timers and without counting event-loop turns.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import queue
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "LoopClock", "ManualClock", "Timer"]

Callback = Callable[[], None]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (ETAs and expiries are absolute)."""
        ...

    def call_at(self, when: float, callback: Callback) -> Timer:
        """Call ``callback`` once ``time()`` has reached ``when``."""
        ...

    def defer(self, callback: Callback) -> None:
        """Call ``callback`` soon, on this thread, after the current event is handled."""
        ...

    def defer_threadsafe(self, callback: Callback) -> None:
        """``defer`` from any other thread."""
        ...


class LoopClock:
    """The real clock: ``time.time()`` and an asyncio loop's callbacks.

    Bound to the loop running when it is first used on the loop's thread, or
    by ``bind()``, so it can be created before the loop starts (a supervisor
    is configured, then run); other threads may defer to it once bound."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop

    def bind(self) -> None:
        """Bind to the running loop (call on the loop's thread)."""
        self._loop = asyncio.get_running_loop()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def time(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callback) -> Timer:
        return self.loop.call_later(max(0.0, when - time.time()), callback)

    def defer(self, callback: Callback) -> None:
        self.loop.call_soon(callback)

    def defer_threadsafe(self, callback: Callback) -> None:
        self.loop.call_soon_threadsafe(callback)


class _ManualTimer:
    __slots__ = ("cancelled",)

    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class ManualClock:
    """A clock for tests: time moves only when told to.

    ``settle()`` runs deferred callbacks until none is left (what the event
    loop would do before it next waits); ``advance(seconds)`` settles, then
    fires, in order, every timer that comes due, settling after each;
    ``wait_threadsafe()`` blocks until another thread defers a callback,
    then runs it and settles (a store's commit coming back)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self._timers: list[tuple[float, int, _ManualTimer, Callback]] = []
        self._order = itertools.count()
        self._deferred: deque[Callback] = deque()
        self._from_threads: queue.SimpleQueue[Callback] = queue.SimpleQueue()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callback) -> Timer:
        timer = _ManualTimer()
        heapq.heappush(self._timers, (when, next(self._order), timer, callback))
        return timer

    def defer(self, callback: Callback) -> None:
        self._deferred.append(callback)

    def defer_threadsafe(self, callback: Callback) -> None:
        self._from_threads.put(callback)

    def settle(self, limit: int = 100_000) -> int:
        """Run deferred callbacks (and those they defer) until none is left;
        return how many ran. ``limit`` guards against a callback that keeps
        deferring itself."""
        ran = 0
        while self._deferred:
            ran += 1
            if ran > limit:
                raise RuntimeError(f"more than {limit} deferred callbacks: a deferral loop?")
            self._deferred.popleft()()
        return ran

    def advance(self, seconds: float) -> None:
        self.settle()
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                callback()
                self.settle()
        self.now = target

    def wait_threadsafe(self, timeout: float = 10.0) -> None:
        """Block until a callback comes from another thread; run it, then settle."""
        try:
            callback = self._from_threads.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no callback from another thread within {timeout}s") from None
        callback()
        self.settle()

    @property
    def pending_timers(self) -> int:
        return sum(1 for entry in self._timers if not entry[2].cancelled)

    @property
    def next_timer(self) -> float | None:
        """When the earliest live timer is due, if any."""
        live = [entry[0] for entry in self._timers if not entry[2].cancelled]
        return min(live) if live else None
