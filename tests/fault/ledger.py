"""Reading the execution log of ``tests.fault.app`` into the harness's figures.

Two kinds of "ran twice" are told apart, because only one is a promise:

- a *raw re-execution* is a step body that finished (``done``) more than once
  for one run and key. At-least-once delivery allows it: a worker killed after
  the body finished but before its result reached the supervisor (or a
  supervisor killed before committing that result) cannot tell the work was
  done, so the step runs again. Each such loss can cause at most one per task
  slot that was busy at that moment, which gives a bound to check.
- a result *recorded twice* is a run and key for which workflow bodies were
  handed two different executions' results. That would mean a cached result
  was computed again and stored over the first: the promise is that it never
  happens, whatever is killed.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Ledger", "read_ledger"]


@dataclass
class Ledger:
    started: Counter[tuple[str, str]] = field(default_factory=Counter)
    done: Counter[tuple[str, str]] = field(default_factory=Counter)
    executions: set[str] = field(default_factory=set)  # EXEC ids whose body finished
    seen: defaultdict[tuple[str, str], set[str]] = field(default_factory=lambda: defaultdict(set))
    bodies: Counter[str] = field(default_factory=Counter)  # workflow bodies begun, per run
    ends: Counter[str] = field(default_factory=Counter)  # workflow bodies that reached the end
    poisoned: Counter[str] = field(default_factory=Counter)  # poison steps begun, per run

    def add_results(self, results: Mapping[str, Mapping[str, str]]) -> None:
        """The outcomes clients were given count as results handed out too."""
        for run, result in results.items():
            for key, execution in result.items():
                self.seen[(run, key)].add(execution)

    # -- the figures ------------------------------------------------------

    @property
    def step_executions(self) -> int:
        return sum(self.done.values())

    @property
    def interrupted(self) -> int:
        """Bodies that began but never finished (killed mid-step)."""
        return sum(max(0, self.started[k] - self.done[k]) for k in self.started)

    @property
    def keys_reexecuted(self) -> int:
        """(run, key) pairs whose body finished more than once."""
        return sum(1 for count in self.done.values() if count > 1)

    @property
    def raw_reexecutions(self) -> int:
        """Finished executions beyond the first, summed over (run, key)."""
        return sum(count - 1 for count in self.done.values() if count > 1)

    @property
    def recorded_twice(self) -> int:
        """(run, key) pairs handed more than one execution's result."""
        return sum(1 for executions in self.seen.values() if len(executions) > 1)

    @property
    def unexplained_results(self) -> int:
        """Results handed out that no finished execution produced."""
        return sum(len(executions - self.executions) for executions in self.seen.values())

    @property
    def workflow_bodies(self) -> int:
        return sum(self.bodies.values())

    @property
    def completion_reruns(self) -> int:
        """Workflow bodies that reached their end again for a run that had
        already reached it (the end was not recorded before a crash)."""
        return sum(count - 1 for count in self.ends.values() if count > 1)


def read_ledger(path: Path) -> Ledger:
    ledger = Ledger()
    if path.exists():
        _parse(ledger, path.read_text().splitlines())
    return ledger


def _parse(ledger: Ledger, lines: Iterable[str]) -> None:
    for line in lines:
        match line.split():
            case ["start", run, key, _pid, _execution]:
                ledger.started[(run, key)] += 1
            case ["done", run, key, _pid, execution]:
                ledger.done[(run, key)] += 1
                ledger.executions.add(execution)
            case ["seen", run, key, execution, _body]:
                ledger.seen[(run, key)].add(execution)
            case ["body", run, _body, _pid, _attempt]:
                ledger.bodies[run] += 1
            case ["end", run, _body]:
                ledger.ends[run] += 1
            case ["poison", run, _pid]:
                ledger.poisoned[run] += 1
            case _:
                raise ValueError(f"malformed line in the execution log: {line!r}")
