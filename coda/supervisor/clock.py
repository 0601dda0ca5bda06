"""Time for the I/O-free parts of the supervisor (the broker, the result store).

They never sleep and never read the system clock themselves: they ask a
``Clock`` what time it is and to call them back at a given time. The
supervisor passes a ``LoopClock`` (wall clock, timers on the running asyncio
loop); tests pass a fake one they advance by hand, so ETAs, TTLs and expiries
are tested without waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "LoopClock", "Timer"]


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock seconds since the epoch (ETAs and expiries are absolute)."""
        ...

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        """Call ``callback`` once ``time()`` has reached ``when``."""
        ...


class LoopClock:
    """The real clock: ``time.time()`` and the running asyncio loop's timers."""

    def time(self) -> float:
        return time.time()

    def call_at(self, when: float, callback: Callable[[], None]) -> Timer:
        delay = max(0.0, when - time.time())
        return asyncio.get_running_loop().call_later(delay, callback)
