"""The engine in a fleet: several supervisors sharing one database.

With a shared store (PostgreSQL), the jobs this supervisor *holds* are the
only ones in its engine: it runs them on its workers as a single supervisor
would. The others live in the database, held by another supervisor or by
nobody yet. This module decides, and keeps track of, what crosses that line:

- A job submitted by a client is *published*: written held by nobody, and
  every supervisor whose workers consume its queue is woken to claim it. A
  task a workflow spawns stays with this supervisor when its workers
  consume the task's queue (it runs next to its workflow); otherwise it is
  published. A job held back until a time (``countdown``/``eta``) stays too,
  with its timer; if this supervisor dies, the others take it when due.
- When workers have room and nothing is ready here, it *claims* jobs nobody
  holds from the queues they consume, a few times the room (one claim in
  flight per kind and set of queues; a claim that comes back short waits
  for the next notification).
- A job that ends elsewhere is announced; whoever waits for it here (a
  client, a workflow's spawn) is answered from the database.
- A cancel of a job held elsewhere is forwarded to its holder through the
  database; one held by nobody is claimed here and cancelled.
- A write fenced off (another supervisor reclaimed the job after this one
  lost its lease) drops the job here; a lost lease stops this supervisor.

The database side (threads, SQL, notifications) is the store's
(``coda.supervisor.stores.postgres.fleet``); this side is sans-I/O.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

from .cancel import Cancellations
from .dispatch import Dispatcher
from .jobs import Job
from .waiters import Waiters

__all__ = ["CLAIM_BATCH", "Fleet", "FleetLink", "FleetMember", "SharedStore"]

log = logging.getLogger("coda.fleet")

CLAIM_BATCH = 64  # jobs one claim may take
CLAIM_AHEAD = 4  # a claim takes up to this many times the room workers have now


class Engine(Protocol):
    """What the fleet side uses of the engine."""

    dispatch: Dispatcher
    waiters: Waiters
    cancellations: Cancellations

    @property
    def live(self) -> Mapping[str, Job]: ...

    def adopt(self, jobs: list[Job]) -> None: ...

    def ended_elsewhere(self, jobs: list[Job]) -> None: ...


class FleetLink(Protocol):
    """What the shared store offers the engine's fleet side."""

    id: str

    def claim(
        self, kind: str, queues: tuple[str, ...], limit: int, done: Callable[[list[Job]], None]
    ) -> None: ...

    def claim_one(self, job_id: str, done: Callable[[list[Job]], None]) -> None: ...

    def fetch(self, job_ids: list[str], done: Callable[[list[Job]], None]) -> None: ...

    def ask_cancel(self, job_id: str, terminate: bool, done: Callable[[bool], None]) -> None: ...


class FleetMember(FleetLink, Protocol):
    """A supervisor's membership, as the supervisor drives it."""

    def join(self) -> None: ...

    def start(self, events: Any) -> None:
        """Begin heartbeats and listening; ``events`` is the engine's ``Fleet``."""
        ...

    def leave(self) -> int:
        """Release the jobs held here and leave (a clean stop); how many."""
        ...

    def stop(self) -> None: ...

    def statistics(self) -> dict[str, object]: ...


@runtime_checkable
class SharedStore(Protocol):
    """A store several supervisors share (PostgreSQL)."""

    on_fenced: Callable[[set[str]], None]

    def fleet(
        self,
        clock: Any,
        *,
        supervisor_id: str,
        queues: tuple[str, ...],
        lease: float,
        poll: float,
    ) -> FleetMember: ...


class Fleet:
    """The engine's membership of a fleet (its ``FleetEvents``)."""

    def __init__(
        self,
        link: FleetLink,
        engine: Engine,
        local_queues: tuple[str, ...],
        on_lease_lost: Callable[[str], None],
    ) -> None:
        self.link = link
        self.id = link.id
        self._engine = engine
        self._local_queues = frozenset(local_queues)
        self._on_lease_lost = on_lease_lost
        self._claiming: set[tuple[str, tuple[str, ...]]] = set()
        self._dry: set[tuple[str, tuple[str, ...]]] = set()  # found nothing since last woken
        self._lost = False

    # -- what stays here ----------------------------------------------------------

    def keeps(self, job: Job, *, delayed: bool) -> bool:
        """Whether a new job is held here (else it is published)."""
        spawned_here = job.parent_run is not None and job.queue in self._local_queues
        return spawned_here or delayed

    def hold(self, job: Job) -> None:
        job.owner, job.epoch = self.id, 1

    # -- claims ---------------------------------------------------------------------

    def want(self, kind: str, queues: tuple[str, ...], room: int) -> None:
        """Workers have ``room`` for jobs of ``kind`` from ``queues`` that
        the jobs ready here will not fill (see ``Dispatcher._report_room``)."""
        key = (kind, queues)
        if self._lost or key in self._claiming or key in self._dry:
            return
        self._claiming.add(key)
        # a little ahead of the room: the next jobs are here when slots free
        # up, without a round trip each time, and no supervisor hoards much
        limit = min(room * CLAIM_AHEAD, CLAIM_BATCH)
        self.link.claim(kind, queues, limit, lambda jobs: self._claimed(key, limit, jobs))

    def _claimed(self, key: tuple[str, tuple[str, ...]], limit: int, jobs: list[Job]) -> None:
        self._claiming.discard(key)
        if len(jobs) < limit:
            self._dry.add(key)  # nothing more until something new is announced
        if not self._lost:
            self._engine.adopt(jobs)

    # -- FleetEvents ------------------------------------------------------------------

    def work_available(self) -> None:
        self._dry.clear()
        self._engine.dispatch.schedule_pump()

    def finished_elsewhere(self, job_ids: list[str]) -> None:
        wanted = [i for i in job_ids if self._engine.waiters.waiting_for(i)]
        wanted = [i for i in wanted if i not in self._engine.live]
        if wanted:
            self.link.fetch(wanted, self._engine.ended_elsewhere)

    def cancel_requested(self, job_id: str, terminate: bool) -> None:
        job = self._engine.live.get(job_id)
        if job is not None:
            self._engine.cancellations.cancel(job, terminate)

    def lease_lost(self, reason: str) -> None:
        log.error("this supervisor lost its place in the fleet: %s; stopping", reason)
        self._lost = True
        self._engine.dispatch.paused = True
        self._on_lease_lost(reason)

    def reconnected(self) -> None:
        """Notifications may have been lost meanwhile: look for work, and
        read again the jobs someone here waits for."""
        self.work_available()
        waited = [i for i in self._engine.waiters.job_ids() if i not in self._engine.live]
        if waited:
            self.link.fetch(waited, self._engine.ended_elsewhere)

    # -- cancels of jobs held elsewhere -------------------------------------------------

    def cancel_elsewhere(
        self, job: Job, terminate: bool, answer: Callable[[str | None], None]
    ) -> None:
        """Cancel a job this supervisor does not hold; ``answer(state)`` with
        ``cancelled``, ``cancelling``, or None if it ended meanwhile."""
        if job.owner is None:  # held by nobody: take it, then cancel it here
            self.link.claim_one(job.id, lambda jobs: self._take_and_cancel(job, jobs, answer))
            return
        self.link.ask_cancel(
            job.id, terminate, lambda asked: answer("cancelling" if asked else None)
        )

    def _take_and_cancel(
        self, job: Job, jobs: list[Job], answer: Callable[[str | None], None]
    ) -> None:
        if not jobs:  # someone claimed it first: ask them instead
            self.link.ask_cancel(
                job.id, False, lambda asked: answer("cancelling" if asked else None)
            )
            return
        for taken in jobs:
            taken.cancelling = True
        self._engine.adopt(jobs)
        answer("cancelled")
