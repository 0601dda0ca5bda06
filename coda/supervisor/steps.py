"""The durable step: check, run, record — and what is written when.

A spawn with a cache key is a *step* of its workflow run, named by (run id,
task or workflow name, the MessagePack encoding of the key). The first time
a run reaches a step, the engine creates the step's job and this module
records it under that name. Every later spawn of the same step, in the same
attempt or in a rerun, is answered by that job: attached to it while it
runs, answered from its result once it has succeeded. A step whose job
failed (or was cancelled) answers with that failure the attempt of the run
that spawned it, rerun after an interruption (a lost worker, a restart): it
is the outcome that attempt had, or would have had. A later attempt (the run
failed and is retried) runs the step again, and the new job replaces the old
in the record. So a poison step, one that kills its worker, fails its run
once instead of being spawned again by every rerun.

Lookups. The steps of every run started by this supervisor generation are
indexed in memory, all of them, so a step not in the index is a miss known
without a store read; a run recovered after a restart reads the store.

Reruns. A run that starts again (a retry, a lost worker, a restart) is sent,
with ``RunWorkflow``, the results of its steps that already succeeded, up to
``HISTORY_BUDGET`` bytes of them, oldest first; its worker answers those
spawns itself (``coda.worker``'s history), without a round trip, and reports
how many it answered. The rest are asked for as usual.

What is written when. Every change of a job goes through ``save``:

- a task spawned by a workflow is not written while it is unfinished; it is
  written once, finished, with its result and without its arguments (nothing
  reads them again). If the supervisor dies first, the workflow, which is
  written, is rerun and spawns the task again, as it would a task it had not
  reached. For the chain benchmark this halves the rows written per workflow
  and drops the arguments of every step;
- when a workflow run ends while some of its tasks are still unfinished (a
  spawn never awaited), those are written then, with their arguments, so
  they are recovered on their own after a restart;
- everything else (runs, child workflows, whose own steps hang on their run
  id) is written at every change; so is, in a fleet, a task published for
  any supervisor to claim (see fleet.py).
"""

from __future__ import annotations

from collections.abc import Callable

from ..messages import CachedStep
from .jobs import Job, JobState
from .stores.base import Store

__all__ = ["HISTORY_BUDGET", "StepName", "Steps"]

HISTORY_BUDGET = 8 * 1024 * 1024  # bytes of results sent with one RunWorkflow

StepName = tuple[str, bytes]  # (task or workflow name, encoded cache key) within a run


class Steps:
    """The record of every run's steps, and the engine's write policy."""

    def __init__(self, store: Store, find_job: Callable[[str], Job | None]) -> None:
        self.store = store
        self.shared = False  # in a fleet, a job held by nobody is written at once
        self._find_job = find_job
        self._index: dict[str, dict[StepName, str]] = {}  # live runs of this generation
        self._unwritten: dict[str, dict[str, Job]] = {}  # run id -> its unwritten tasks
        self._written_steps: set[str] = set()  # unfinished tasks written all the same

    # -- runs ---------------------------------------------------------------

    def run_created(self, run_id: str) -> None:
        """A new run: no step of it is recorded anywhere yet."""
        self._index[run_id] = {}

    def run_finished(self, run: Job) -> None:
        """Forget the run's index; write the tasks it leaves unfinished."""
        self._index.pop(run.id, None)
        for task in self._unwritten.pop(run.id, {}).values():
            self._written_steps.add(task.id)
            self.store.save_job(task)

    def recovered(self, job: Job) -> None:
        """A job read back after a restart is in the store already."""
        if _is_task_step(job):
            self._written_steps.add(job.id)

    # -- check and record ---------------------------------------------------------

    def answering(self, run_id: str, step: StepName, attempt: int) -> Job | None:
        """The job that answers a step for the run's ``attempt``: running,
        succeeded, or failed in this same attempt. None when the step has
        not been reached, or failed in an earlier attempt (it runs again)."""
        index = self._index.get(run_id)
        job_id = self.store.get_cached((run_id, *step)) if index is None else index.get(step)
        job = None if job_id is None else self._find_job(job_id)
        if job is None:
            return None
        failed = job.state in (JobState.FAILED, JobState.CANCELLED)
        return None if failed and job.parent_attempt != attempt else job

    def record(self, run_id: str, step: StepName, job: Job) -> None:
        """The step now runs as ``job``."""
        self.store.set_cached((run_id, *step), job.id)
        index = self._index.get(run_id)
        if index is not None:
            index[step] = job.id

    def history(self, run: Job) -> list[CachedStep]:
        """What a starting run may answer itself: its steps that succeeded,
        oldest first, within ``HISTORY_BUDGET`` bytes (its arguments count
        too: they travel in the same message). A run of this generation that
        has recorded no step has none, known without asking the store."""
        if self._index.get(run.id) == {}:
            return []
        budget = HISTORY_BUDGET - len(run.args.body)
        history = []
        for name, key, step in self.store.cached_steps(run.id):
            if step.state is not JobState.SUCCEEDED or step.result is None:
                continue
            budget -= len(step.result.body) + len(key) + len(name)
            if budget < 0:
                break
            history.append(CachedStep(step.kind, name, key, step.result))
        return history

    # -- the write policy -----------------------------------------------------

    def save(self, job: Job) -> None:
        """Record a change of ``job``: now, later or never, as the module says."""
        published = self.shared and job.owner is None
        if not _is_task_step(job) or job.id in self._written_steps or published:
            self.store.save_job(job)
            if job.state.finished:
                self._written_steps.discard(job.id)
            return
        run_id = job.parent_run
        assert run_id is not None
        unwritten = self._unwritten.get(run_id)
        if not job.state.finished:
            if unwritten is None:
                unwritten = self._unwritten[run_id] = {}
            unwritten[job.id] = job
            return
        if unwritten is not None:
            unwritten.pop(job.id, None)
            if not unwritten:
                del self._unwritten[run_id]
        self.store.save_job(job, with_args=False)

    def statistics(self) -> dict[str, int]:
        return {
            "indexed_runs": len(self._index),
            "unwritten_tasks": sum(len(tasks) for tasks in self._unwritten.values()),
        }


def _is_task_step(job: Job) -> bool:
    return job.kind == "task" and job.parent_run is not None
