"""Who is to blame when a worker process dies.

The suspects are the tasks it had started (user code running in its
threads or on its loop), else, when none had, the workflows it drove. A task
it held back and never started cannot have killed it; nor is anybody blamed
while the supervisor drains (workers are let go on purpose) or when the
engine had the worker killed (a task past its timeout, already failed).

A suspect alone is surely to blame: past ``max_losses`` such deaths it fails
as ``coda.WorkerLost``. A suspect among several may be a bystander of the
one that did it: past ``max_losses`` suspicions it is *isolated* (see
dispatch.py: it then runs alone on a worker), so its next deaths are its own.
A poison job is so told from its bystanders, and an external kill (the OOM
killer, an operator) costs the jobs it interrupted a rerun, not their run.
"""

from __future__ import annotations

import logging

from ..messages import Failure
from .jobs import Job

__all__ = ["judge"]

log = logging.getLogger("coda.engine")


def judge(
    held: list[tuple[Job, bool]], *, blameless: bool, draining: bool, max_losses: int
) -> dict[str, Failure]:
    """Record a worker's death against the (job, started) leases it held;
    return the failures of the jobs that must not run again, by job id."""
    if not draining:
        for job, started in held:
            job.losses += started  # interrupted: a rerun is a redelivery
    suspects = [] if blameless or draining else _suspects(held)
    for job in suspects:
        job.blamed += 1
        if len(suspects) == 1:
            job.blamed_alone += 1
    verdicts: dict[str, Failure] = {}
    for job, _ in held:
        if job.blamed_alone > max_losses:
            verdicts[job.id] = Failure(
                type_name="coda.WorkerLost",
                message=f"its worker died {job.blamed_alone} times while it ran there "
                "alone; giving up",
            )
        elif job.blamed > max_losses and not job.isolated:
            job.isolated = True
            log.warning(
                "%s %s was running when %d workers died: it runs alone from now on",
                job.kind,
                job.id,
                job.blamed,
            )
    return verdicts


def _suspects(held: list[tuple[Job, bool]]) -> list[Job]:
    started_tasks = [job for job, started in held if started and job.kind == "task"]
    if started_tasks:
        return started_tasks
    return [job for job, _ in held if job.kind == "workflow"]
