"""The in-memory store: fast, and gone when the supervisor exits."""

from __future__ import annotations

from collections.abc import Iterable

from .jobs import Job
from .store import CacheKey, Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Holds the scheduler's own job objects; nothing is copied."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._cache: dict[str, dict[tuple[str, bytes], str]] = {}  # by workflow run
        self._children: dict[str, list[str]] = {}

    def save_job(self, job: Job) -> None:
        if job.id not in self._jobs:
            self._jobs[job.id] = job
            if job.parent_run is not None:
                self._children.setdefault(job.parent_run, []).append(job.id)

    def get_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def get_cached(self, key: CacheKey) -> str | None:
        run_id, name, encoded = key
        return self._cache.get(run_id, {}).get((name, encoded))

    def set_cached(self, key: CacheKey, job_id: str) -> None:
        run_id, name, encoded = key
        self._cache.setdefault(run_id, {})[(name, encoded)] = job_id

    def cached_steps(self, run_id: str) -> list[tuple[str, bytes, Job]]:
        steps = [
            (name, key, self._jobs[job_id])
            for (name, key), job_id in self._cache.get(run_id, {}).items()
            if job_id in self._jobs
        ]
        steps.sort(key=lambda step: step[2].created_at)
        return steps

    def unfinished_jobs(self) -> Iterable[Job]:
        return [job for job in self._jobs.values() if not job.state.finished]

    def expire(self, finished_before: float) -> int:
        roots = [
            job
            for job in self._jobs.values()
            if job.parent_run is None
            and job.finished_at is not None
            and job.finished_at < finished_before
        ]
        dropped = 0
        for root in roots:
            dropped += self._drop_tree(root.id)
        return dropped

    def _drop_tree(self, job_id: str) -> int:
        dropped = 0
        for child in self._children.pop(job_id, []):
            dropped += self._drop_tree(child)
        self._cache.pop(job_id, None)  # the entries of the run, if it was a workflow
        if self._jobs.pop(job_id, None) is not None:
            dropped += 1
        return dropped

    def statistics(self) -> dict[str, int]:
        entries = sum(len(run) for run in self._cache.values())
        return {"jobs": len(self._jobs), "cache_entries": entries}
