"""Messages held by the broker until their ETA (Celery's ``eta``/``countdown``).

A heap ordered by due time, and one timer, for the earliest, at any moment:
holding a million messages costs no polling. A held message belongs to one
queue; purging or deleting that queue voids it (the queue's ``generation``
changes), so nothing stale comes out later.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..supervisor.clock import Clock, Timer
from .queues import BrokerQueue, Envelope

__all__ = ["HeldMessages"]


@dataclass(order=True)
class _Held:
    due: float
    seq: int
    queue: BrokerQueue = field(compare=False)
    generation: int = field(compare=False)
    envelope: Envelope = field(compare=False)


class HeldMessages:
    """``release(due)`` is called with the (queue, message) pairs whose time came."""

    def __init__(
        self, clock: Clock, release: Callable[[list[tuple[BrokerQueue, Envelope]]], None]
    ) -> None:
        self._clock = clock
        self._release = release
        self._heap: list[_Held] = []
        self._order = itertools.count()
        self._timer: Timer | None = None
        self._timer_due: float | None = None

    def __len__(self) -> int:
        return len(self._heap)

    def entries(self) -> Iterator[tuple[BrokerQueue, Envelope, float]]:
        """Every message still held, with its queue and due time, soonest first."""
        for held in sorted(self._heap):
            if held.generation == held.queue.generation:
                yield held.queue, held.envelope, held.due

    def hold(self, queue: BrokerQueue, envelope: Envelope, due: float) -> None:
        heapq.heappush(self._heap, _Held(due, next(self._order), queue, queue.generation, envelope))
        queue.held += 1
        self._arm()

    def held_in(self, queue: BrokerQueue) -> list[Envelope]:
        """The messages held for this queue (a scan: for purges)."""
        return [
            h.envelope for h in self._heap if h.queue is queue and h.generation == queue.generation
        ]

    def _arm(self) -> None:
        if not self._heap:
            return
        due = self._heap[0].due
        if self._timer_due is not None and self._timer_due <= due:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_due = due
        self._timer = self._clock.call_at(due, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self._timer_due = None
        now = self._clock.time()
        due: list[tuple[BrokerQueue, Envelope]] = []
        while self._heap and self._heap[0].due <= now:
            held = heapq.heappop(self._heap)
            if held.generation == held.queue.generation:  # not purged or deleted since
                held.queue.held -= 1
                due.append((held.queue, held.envelope))
        if due:
            self._release(due)
        self._arm()
