"""The supervisor's unit of work.

A *job* is one task or one workflow run the supervisor must see through to
an end. Workflow runs and tasks submitted by a client are jobs without a
parent; tasks and child workflows spawned by a workflow carry the parent's
run id and, optionally, a cache key under which their result is stored for
that run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..messages import Failure, Kind, Payload

__all__ = ["Job", "JobState"]


class JobState(enum.Enum):
    QUEUED = "queued"  # waiting for a worker slot
    DELAYED = "delayed"  # waiting for a retry delay to pass
    RUNNING = "running"  # leased to a worker
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    finished: bool  # an end state; a plain attribute: read several times per job per turn

    def __init__(self, value: str) -> None:
        self.finished = value in ("succeeded", "failed", "cancelled")


@dataclass(slots=True, eq=False)
class Job:
    id: str
    kind: Kind
    name: str
    args: Payload
    queue: str
    parent_run: str | None = None
    parent_attempt: int = 0  # the attempt of the parent run that spawned it
    cache_key: bytes | None = None
    attempt: int = 1
    losses: int = 0  # times its worker died while it ran there (it may have run before)
    requeues: int = 0  # deliveries it gave back in a row (requeues.py); 0 after a retry
    blamed: int = 0  # deaths of its worker it was a suspect of (see Engine.worker_left)
    blamed_alone: int = 0  # ...of which it was the only suspect
    isolated: bool = False  # runs alone on its worker from now on
    cancelling: bool = False  # cancel requested: it ends cancelled, and is never rerun
    owner: str | None = None  # on a shared store: the supervisor that holds it (None: nobody)
    epoch: int = 0  # on a shared store: how many times it was claimed (fences late writes)
    state: JobState = JobState.QUEUED
    result: Payload | None = None
    failure: Failure | None = None
    worker: int | None = None
    ready_at: float = 0.0  # wall-clock time a delayed job becomes due
    created_at: float = 0.0  # set by the engine from its clock
    started_at: float | None = None  # its last attempt began on a worker
    finished_at: float | None = None
