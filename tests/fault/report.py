"""The figures a fault scenario ends with, and which of them are promises."""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.fault.ledger import Ledger

__all__ = ["Report", "Scenario"]


@dataclass(frozen=True)
class Scenario:
    """Sizes of one run of the harness."""

    workflows: int = 30
    steps: int = 4  # cache-keyed steps per workflow, plus one final cache-keyed step
    work_ms: tuple[float, float] = (5.0, 30.0)  # each step sleeps a random time in this range
    workers: int = 3
    concurrency: int = 2  # task slots per worker
    in_flight: int = 6  # workflows the driver keeps running at once
    kill_workers: int = 0
    pinned_kills: int = 0  # of kill_workers: made to land mid-step (the step waits on a gate)
    kill_supervisor: int = 0
    store: str = ""  # --store URL; empty: a SQLite file in the scenario's directory
    kill_over: float = 0.0  # > 0: worker kills at random times over this many seconds
    poisoned: int = 0  # of the workflows, how many run a step that kills its worker
    fleet: int = 0  # > 0: that many supervisors sharing one PostgreSQL database
    seed: int = 1
    timeout: float = 120.0

    def describe(self) -> str:
        chaos = (
            f"{self.kill_supervisor} SIGKILLs of a supervisor's process group, each followed "
            "by a restart on the same store"
            if self.kill_supervisor
            else f"{self.kill_workers} SIGKILLs of workers ({self.pinned_kills} pinned mid-step)"
        )
        if self.kill_over:
            chaos += f" spread over {self.kill_over:.0f}s"
        if self.poisoned:
            chaos += f"; {self.poisoned} of the workflows run a poison step"
        if self.fleet:
            chaos += f"; a fleet of {self.fleet} supervisors on one PostgreSQL"
        return (
            f"{self.workflows} workflows x ({self.steps} steps + final), {self.in_flight} at once; "
            f"{self.workers} workers x {self.concurrency} task slots; {chaos}; "
            f"store {self.store}; seed {self.seed}"
        )


@dataclass
class Report:
    name: str
    scenario: Scenario
    accepted: int
    results: dict[str, dict[str, str]]  # run id -> the outcome its client was given
    failed: dict[str, str]  # run id -> failure (WorkflowFailed, not_found, timeout)
    kills: int
    duplicate_completions: int  # runs whose outcome differed between two fetches
    forgotten: int  # completed runs the supervisor no longer knew at the end
    ledger: Ledger
    worker_restarts: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def completed(self) -> int:
        return len(self.results)

    @property
    def poisoned_runs(self) -> set[str]:
        """Runs that began a poison step: their failure is by design."""
        return set(self.ledger.poisoned)

    @property
    def lost(self) -> int:
        """Accepted runs that never came back with a result (a poisoned run's
        failure is its expected outcome, not a loss)."""
        return self.accepted - self.completed - len(self.poisoned_runs & set(self.failed))

    @property
    def innocents_lost_to_workers(self) -> int:
        """Runs failed with WorkerLost that never began a poison step: blamed
        for a worker's death they did not cause."""
        return sum(
            1
            for run, failure in self.failed.items()
            if "WorkerLost" in failure and run not in self.poisoned_runs
        )

    @property
    def worker_deaths(self) -> int:
        """Worker processes killed by the harness or by a poison step."""
        return self.kills + sum(self.ledger.poisoned.values())

    @property
    def reexecution_bound(self) -> int | None:
        """Worker kills: each can re-run at most the steps its worker held,
        one per task slot. Supervisor kills: the steps leased at the crash
        plus those finished in group commits not yet written, which depends
        on timing, so no bound is claimed (the figure is reported)."""
        if self.scenario.kill_supervisor:
            return None
        return self.worker_deaths * self.scenario.concurrency

    def violations(self) -> list[str]:
        """The promises that did not hold (empty when all did)."""
        checks = [
            (self.accepted == self.scenario.workflows, "not every submit was accepted"),
            (self.lost == 0, f"{self.lost} accepted runs lost: {sorted(self.failed.items())[:5]}"),
            (
                self.innocents_lost_to_workers == 0,
                f"{self.innocents_lost_to_workers} runs that ran no poison failed as WorkerLost",
            ),
            (
                len(self.poisoned_runs & set(self.failed)) == self.scenario.poisoned,
                "a poisoned run did not fail",
            ),
            (self.ledger.recorded_twice == 0, "a cache-keyed result was recorded twice"),
            (self.ledger.unexplained_results == 0, "a result came from no finished execution"),
            (self.duplicate_completions == 0, "a run completed with two different outcomes"),
            (self.forgotten == 0, f"{self.forgotten} completed runs were forgotten"),
            (
                self.reexecution_bound is None
                or self.ledger.raw_reexecutions <= self.reexecution_bound,
                "more raw re-executions than worker deaths x task slots can explain",
            ),
            (
                self.kills == self.scenario.kill_workers + self.scenario.kill_supervisor,
                f"only {self.kills} kills happened while work was in flight",
            ),
            (
                self.ledger.interrupted >= self.scenario.pinned_kills,
                f"{self.scenario.pinned_kills} kills were pinned mid-step, but only"
                f" {self.ledger.interrupted} step executions were interrupted",
            ),
        ]
        return [message for ok, message in checks if not ok]

    def format(self) -> str:
        ledger = self.ledger
        rows = [
            ("accepted", self.accepted, ""),
            ("completed", self.completed, ""),
            ("lost", self.lost, "must be 0"),
            ("kills", self.kills, ""),
            ("poisoned runs failed (by design)", len(self.poisoned_runs & set(self.failed)), ""),
            ("worker deaths from poison", sum(self.ledger.poisoned.values()), ""),
            (
                "runs without poison failed as WorkerLost",
                self.innocents_lost_to_workers,
                "must be 0",
            ),
            ("worker restarts", self.worker_restarts, ""),
            ("step executions finished", ledger.step_executions, ""),
            ("step executions interrupted by a kill", ledger.interrupted, "re-run: at least once"),
            ("cache-keyed steps finished more than once", ledger.keys_reexecuted, ""),
            (
                "raw re-executions (finished, result not recorded)",
                ledger.raw_reexecutions,
                "at-least-once: reported, no bound claimed"
                if self.reexecution_bound is None
                else f"allowed <= {self.reexecution_bound} (worker deaths x task slots)",
            ),
            ("cache-keyed results recorded more than once", ledger.recorded_twice, "must be 0"),
            ("results from no finished execution", ledger.unexplained_results, "must be 0"),
            ("workflow bodies run", ledger.workflow_bodies, ""),
            ("workflow ends re-run (raw)", ledger.completion_reruns, ""),
            ("duplicate completions", self.duplicate_completions, "must be 0"),
            ("completed runs forgotten by the end", self.forgotten, "must be 0"),
        ]
        lines = [f"fault harness: {self.name}", f"  {self.scenario.describe()}"]
        lines += [f"  {label:<52} {value:>6}  {note}".rstrip() for label, value, note in rows]
        lines.append(f"  {'elapsed':<52} {self.seconds:>6.1f}s")
        lines += [f"  note: {note}" for note in self.notes]
        verdict = self.violations()
        lines.append(
            "  OK: every guarantee held" if not verdict else "  FAILED: " + "; ".join(verdict)
        )
        return "\n".join(lines)
