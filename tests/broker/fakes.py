"""Fake peers, a hand-driven clock and a recorded supervisor host for the
broker's unit tests."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from coda.broker.messages import Deliver
from coda.messages import Kind, Submit, WireMessage
from coda.supervisor import SupervisorConfig
from coda.supervisor.extension import ClientPeer, JobSummary, WorkerSummary


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


@dataclass
class FakeHost:
    """What a supervisor offers the broker's Celery node, recorded."""

    config: SupervisorConfig = field(default_factory=SupervisorConfig)
    clock: FakeClock = field(default_factory=FakeClock)
    live: dict[str, JobSummary] = field(default_factory=dict)
    cancelled: list[tuple[str, bool]] = field(default_factory=list)
    submitted: list[Submit] = field(default_factory=list)

    def submit(self, peer: ClientPeer, message: Submit) -> None:
        self.submitted.append(message)

    def is_task(self, name: str) -> bool:
        return True

    def cancel(self, run_id: str, terminate: bool = False) -> str | None:
        self.cancelled.append((run_id, terminate))
        return "cancelled" if self.live.pop(run_id, None) else None

    def purge(self, queue: str) -> int:
        return 0

    def cancel_waiting(self, run_id: str) -> bool:
        job = self.live.get(run_id)
        if job is None or job.started:
            return False
        self.cancel(run_id)
        return True

    def job(self, run_id: str) -> JobSummary | None:
        return self.live.get(run_id)

    def jobs(self, kind: Kind = "task") -> list[JobSummary]:
        return [job for job in self.live.values() if job.kind == kind]

    def workers(self) -> list[WorkerSummary]:
        return [WorkerSummary(1, 4242, ("default",), 1, 1)]

    def task_names(self) -> list[str]:
        return ["proj.add"]

    def counts(self) -> Mapping[str, Mapping[str, int]]:
        return {"proj.add": {"succeeded": 3, "failed": 1}}
