"""The store contract: what the engine asks of whatever keeps its state.

The engine owns the live structures (ready queues, leases, waiters) and
decides *what* is written *when* (``coda.supervisor.steps``). A store only
records jobs and cache entries, answers reads, and hands unfinished jobs back
after a restart. Every store passes the same contract suite
(``tests/stores/test_contract.py``).

Durability: a store may write lazily (a durable one groups every change of
one event-loop turn into one commit), but it must call the callbacks given
to ``after_commit`` only once everything saved before has reached its medium.
The engine acknowledges a submit or answers a spawn from such a callback, so
nothing is promised to a peer before it is durable.

Reads see the store's own unwritten changes. A job read back may be the very
object saved (memory) or a copy (a file): callers never rely on either.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..jobs import Job

__all__ = ["CacheKey", "ScheduleMark", "Store"]

CacheKey = tuple[str, str, bytes]  # (workflow run id, task or workflow name, encoded key)


@dataclass(frozen=True)
class ScheduleMark:
    """How far a schedule's ticks have been handled (``coda.supervisor.scheduler``):
    every tick at or before ``covered`` was submitted or deliberately skipped;
    ``last_tick`` is the latest one submitted. Both only move forward."""

    covered: float
    last_tick: float | None = None

    def merged(self, other: ScheduleMark) -> ScheduleMark:
        """The later of two marks, field by field (two supervisors of a fleet
        may save marks of the same schedule)."""
        ticks = [t for t in (self.last_tick, other.last_tick) if t is not None]
        return ScheduleMark(max(self.covered, other.covered), max(ticks) if ticks else None)


class Store(abc.ABC):
    """Persistence for jobs and cache entries."""

    shared = False  # several supervisors may use it at once, as a fleet (see fleet.py)

    @abc.abstractmethod
    def save_job(self, job: Job, *, with_args: bool = True) -> None:
        """Record the job's current state (insert or update). Without
        ``with_args`` a job recorded for the first time may be stored without
        its arguments (a finished step: they are never read again)."""

    @abc.abstractmethod
    def get_job(self, job_id: str) -> Job | None:
        """A job by id, finished or not; None if unknown or expired."""

    @abc.abstractmethod
    def get_cached(self, key: CacheKey) -> str | None:
        """The id of the job whose result answers ``key``, if any."""

    @abc.abstractmethod
    def set_cached(self, key: CacheKey, job_id: str) -> None:
        """Point ``key`` at a job (a newer job replaces a failed one)."""

    @abc.abstractmethod
    def cached_steps(self, run_id: str) -> list[tuple[str, bytes, Job]]:
        """Every cache entry of a workflow run whose job is known, as (name,
        encoded key, the job answering it), oldest job first."""

    @abc.abstractmethod
    def unfinished_jobs(self) -> Iterable[Job]:
        """Every recorded job not yet succeeded or failed, oldest first
        (recovery after a restart)."""

    @abc.abstractmethod
    def list_runs(
        self, *, state: str | None, name: str | None, since: float | None, limit: int
    ) -> list[Job]:
        """Root runs (jobs no run spawned), newest first: at most ``limit``,
        in ``state`` and named ``name`` when given, created at or after
        ``since`` when given."""

    @abc.abstractmethod
    def children(self, run_id: str) -> list[Job]:
        """The recorded jobs a run spawned, oldest first."""

    @abc.abstractmethod
    def schedule_marks(self) -> dict[str, ScheduleMark]:
        """The mark of every schedule that ever saved one, by schedule name.
        Marks never expire: a schedule's ticks must not run twice however
        long ago they were."""

    @abc.abstractmethod
    def save_schedule_mark(self, name: str, mark: ScheduleMark) -> None:
        """Record a schedule's mark, in the same commit as the jobs saved in
        the same turn (a tick's run and its mark land together). A mark
        never moves back: the saved one is merged with the one recorded."""

    @abc.abstractmethod
    def expire(self, finished_before: float) -> int:
        """Forget root runs finished before the given time, with every job
        beneath them and their cache entries, and return how many jobs went.
        A tree that still holds an unfinished job (a task its finished
        workflow left running) is kept whole until that job ends."""

    def expire_soon(self, finished_before: float, done: Callable[[int], None]) -> None:
        """``expire`` without stalling the engine: a store that deletes in the
        background calls ``done(dropped)`` on the engine's thread when finished."""
        done(self.expire(finished_before))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once all changes saved so far are durable (at
        once when nothing is pending)."""
        callback()

    def adopt(self, job: Job) -> None:  # noqa: B027 - optional hook
        """A job read back from the store (a restart, a fleet's claim) is
        recorded already: later saves update it."""

    def observe_commits(self, observe: Callable[[float, bool], None]) -> None:  # noqa: B027
        """Have ``observe(seconds, succeeded)`` called on the engine's thread
        after each commit (metrics.py); a store that commits nothing (the
        memory store) never calls it."""

    def unavailable(self) -> str | None:
        """Why the store cannot save new work right now (its last commit
        failed: disk full, read-only, I/O error), or None. The engine then
        refuses new work with that reason rather than leave clients waiting
        for an acknowledgement that cannot come."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

    def statistics(self) -> dict[str, int]:
        """At least ``jobs`` and ``cache_entries``."""
        return {}
