"""What the supervisor keeps, behind a small interface.

The scheduler owns the live structures (ready queues, leases, waiters) and
tells the store about every change of a job and every cache entry. A store
only has to remember them and hand unfinished jobs back after a restart.

Durability contract: a store may write lazily (a durable one groups every
change of one event-loop turn into one commit), but it must call the
callbacks given to ``after_commit`` only once everything saved before has
reached its medium. The supervisor acknowledges a submit or spawn from such
a callback, so an acknowledged job survives a crash of a durable store.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable

from .jobs import Job

__all__ = ["CacheKey", "Store"]

CacheKey = tuple[str, str, bytes]  # (workflow run id, task or workflow name, encoded key)


class Store(abc.ABC):
    """Persistence for jobs and cache entries."""

    @abc.abstractmethod
    def save_job(self, job: Job) -> None:
        """Record the job's current state (insert or update)."""

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
        """Every cache entry of a workflow run, as (name, encoded key, the job
        answering it), oldest job first."""

    @abc.abstractmethod
    def unfinished_jobs(self) -> Iterable[Job]:
        """Every job not yet succeeded or failed, for recovery after a restart."""

    @abc.abstractmethod
    def expire(self, finished_before: float) -> int:
        """Forget finished root runs (and everything under them) older than
        the given time; return how many jobs were dropped."""

    def expire_soon(self, finished_before: float, done: Callable[[int], None]) -> None:
        """``expire`` without stalling the event loop: a store that deletes
        in the background calls ``done(dropped)`` on the loop when finished."""
        done(self.expire(finished_before))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once all changes saved so far are durable."""
        callback()

    def close(self) -> None:  # noqa: B027 - optional hook
        """Flush and release resources."""

    def statistics(self) -> dict[str, int]:
        return {}
