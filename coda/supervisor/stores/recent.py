"""Recently finished jobs, kept in memory after their commit for reads.

A cache hit usually asks for a step that finished moments ago, and a point
read plus decode from the file costs about 150 µs of a cache hit's round
trip. So the most recently committed finished jobs stay in memory, bounded
both by count and by the bytes they hold: their result, their failure's
text and their arguments all count, since a finished job keeps what it was
given until it is evicted.
"""

from __future__ import annotations

from collections import OrderedDict

from ..jobs import Job

__all__ = ["JOB_OVERHEAD", "RecentJobs", "held_bytes"]

JOB_OVERHEAD = 400  # bytes of a Job object and its small fields, roughly


def held_bytes(job: Job) -> int:
    """What keeping ``job`` in memory costs, roughly, in bytes."""
    size = JOB_OVERHEAD + len(job.args.body)
    if job.result is not None:
        size += len(job.result.body)
    if job.failure is not None:
        size += len(job.failure.message) + len(job.failure.traceback)
    return size


class RecentJobs:
    """An LRU of finished jobs, at most ``max_jobs`` and ``max_bytes``."""

    def __init__(self, max_jobs: int, max_bytes: int) -> None:
        self.max_jobs = max_jobs
        self.max_bytes = max_bytes
        self.bytes = 0
        self._jobs: OrderedDict[str, tuple[Job, int]] = OrderedDict()

    def add(self, job: Job) -> None:
        if job.id in self._jobs:
            return
        size = held_bytes(job)
        if size > self.max_bytes:
            return  # would evict everything else for one job: read it from the file
        self._jobs[job.id] = (job, size)
        self.bytes += size
        while len(self._jobs) > self.max_jobs or self.bytes > self.max_bytes:
            _, (_, evicted) = self._jobs.popitem(last=False)
            self.bytes -= evicted

    def get(self, job_id: str) -> Job | None:
        entry = self._jobs.get(job_id)
        return None if entry is None else entry[0]

    def clear(self) -> None:
        self._jobs.clear()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._jobs)
