"""Fake peers and a hand-driven clock for the broker's unit tests."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

from coda.broker.messages import Deliver
from coda.messages import WireMessage


@dataclass
class FakePeer:
    sent: list[WireMessage] = field(default_factory=list)
    is_open: bool = True

    def send(self, message: WireMessage) -> None:
        self.sent.append(message)

    def take(self) -> list[WireMessage]:
        taken, self.sent = self.sent, []
        return taken

    def deliveries(self) -> list[Deliver]:
        return [m for m in self.take() if isinstance(m, Deliver)]


class FakeTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeClock:
    """``advance(seconds)`` runs, in order, every callback that came due."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now
        self._timers: list[tuple[float, int, FakeTimer, Callable[[], None]]] = []
        self._ids = itertools.count()

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer()
        heapq.heappush(self._timers, (when, next(self._ids), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._timers and self._timers[0][0] <= target:
            when, _, timer, callback = heapq.heappop(self._timers)
            self.now = max(self.now, when)
            if not timer.cancelled:
                callback()
        self.now = target

    @property
    def pending(self) -> int:
        return sum(1 for t in self._timers if not t[2].cancelled)
