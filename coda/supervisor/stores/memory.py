"""The in-memory store: fast, and gone when the supervisor exits."""

from __future__ import annotations

from collections.abc import Iterable

from ..jobs import Job
from .base import CacheKey, ScheduleMark, Store

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Holds the engine's own job objects; nothing is copied."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._cache: dict[str, dict[tuple[str, bytes], str]] = {}  # by workflow run
        self._children: dict[str, list[str]] = {}
        self._marks: dict[str, ScheduleMark] = {}

    def save_job(self, job: Job, *, with_args: bool = True) -> None:
        if job.id not in self._jobs and job.parent_run is not None:
            self._children.setdefault(job.parent_run, []).append(job.id)
        self._jobs[job.id] = job  # the same object, usually; a copy read back replaces it

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
        unfinished = [job for job in self._jobs.values() if not job.state.finished]
        unfinished.sort(key=lambda job: job.created_at)
        return unfinished

    def list_runs(
        self, *, state: str | None, name: str | None, since: float | None, limit: int
    ) -> list[Job]:
        runs = [
            job
            for job in self._jobs.values()
            if job.parent_run is None
            and (state is None or job.state.value == state)
            and (name is None or job.name == name)
            and (since is None or job.created_at >= since)
        ]
        runs.sort(key=lambda job: job.created_at, reverse=True)
        return runs[:limit]

    def children(self, run_id: str) -> list[Job]:
        found = [self._jobs[i] for i in self._children.get(run_id, ()) if i in self._jobs]
        found.sort(key=lambda job: job.created_at)
        return found

    def schedule_marks(self) -> dict[str, ScheduleMark]:
        return dict(self._marks)

    def save_schedule_mark(self, name: str, mark: ScheduleMark) -> None:
        known = self._marks.get(name)
        self._marks[name] = mark if known is None else known.merged(mark)

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
            tree = self._tree(root.id)
            if all(self._jobs[job_id].state.finished for job_id in tree):
                dropped += self._drop(tree)
        return dropped

    def _tree(self, root_id: str) -> list[str]:
        """The root and every recorded job beneath it."""
        tree, pending = [], [root_id]
        while pending:
            job_id = pending.pop()
            if job_id in self._jobs:
                tree.append(job_id)
            pending.extend(self._children.get(job_id, ()))
        return tree

    def _drop(self, tree: list[str]) -> int:
        for job_id in tree:
            self._children.pop(job_id, None)
            self._cache.pop(job_id, None)  # the entries of the run, if it was a workflow
            del self._jobs[job_id]
        return len(tree)

    def statistics(self) -> dict[str, int]:
        entries = sum(len(run) for run in self._cache.values())
        return {"jobs": len(self._jobs), "cache_entries": entries}
