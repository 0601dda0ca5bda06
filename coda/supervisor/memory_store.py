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
        self._cache: dict[CacheKey, str] = {}
        self._children: dict[str, list[str]] = {}
        self._cache_of_run: dict[str, dict[tuple[str, bytes], str]] = {}

    def save_job(self, job: Job) -> None:
        if job.id not in self._jobs:
            self._jobs[job.id] = job
            if job.parent_run is not None:
                self._children.setdefault(job.parent_run, []).append(job.id)

    def get_job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def get_cached(self, key: CacheKey) -> str | None:
        return self._cache.get(key)

    def set_cached(self, key: CacheKey, job_id: str) -> None:
        self._cache[key] = job_id
        run_id, name, encoded = key
        self._cache_of_run.setdefault(run_id, {})[(name, encoded)] = job_id

    def cached_steps(self, run_id: str) -> list[tuple[str, bytes, Job]]:
        entries = self._cache_of_run.get(run_id, {})
        steps = [
            (name, key, self._jobs[job_id])
            for (name, key), job_id in entries.items()
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
        if dropped:
            live = self._jobs.keys()
            self._cache = {k: v for k, v in self._cache.items() if v in live}
            self._cache_of_run = {}
            for (run_id, name, encoded), job_id in self._cache.items():
                self._cache_of_run.setdefault(run_id, {})[(name, encoded)] = job_id
        return dropped

    def _drop_tree(self, job_id: str) -> int:
        dropped = 0
        for child in self._children.pop(job_id, []):
            dropped += self._drop_tree(child)
        if self._jobs.pop(job_id, None) is not None:
            dropped += 1
        return dropped

    def statistics(self) -> dict[str, int]:
        return {"jobs": len(self._jobs), "cache_entries": len(self._cache)}
