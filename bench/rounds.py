"""Alternating rounds: several contenders measured on the same items, in turn.

A throughput figure on a shared machine moves with whatever else runs. So
the items are split into ``ROUNDS`` chunks and every contender (Coda through
one client or another, Celery in each configuration) takes its turn on each
chunk, one after the other: a burst of load from elsewhere lands on all of
them, not on one. Each contender's items, seconds and CPU time (of the
processes it names) are added up over its turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["ROUNDS", "Contender", "Tally", "alternate"]

T = TypeVar("T")
ROUNDS = 2


@dataclass
class Tally:
    """Items, seconds and CPU seconds added up over alternating rounds.

    ``cpu`` holds, per name, the CPU seconds of the processes a probe of that
    name reads ("server": the supervisor and its workers, or the Celery
    worker, its pool and its broker and backend; "supervisor": the Coda
    supervisor process alone); "client" is this process.
    """

    items: int = 0
    seconds: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.items / self.seconds

    def per_item(self, probe: str) -> float | None:
        """CPU seconds per item read by ``probe``, if it was read."""
        if probe not in self.cpu or not self.items:
            return None
        return self.cpu[probe] / self.items


@dataclass
class Contender(Generic[T]):
    """One side of a comparison: how it processes a chunk (returning items/s)
    and which CPU clocks to read around it."""

    label: str
    measure: Callable[[Sequence[T]], float]
    probes: Mapping[str, Callable[[], float]]


def alternate(
    contenders: Sequence[Contender[T]], items: Sequence[T], rounds: int = ROUNDS
) -> dict[str, Tally]:
    """Every contender on every chunk of ``items``, in turn; tallies by label."""
    tallies = {contender.label: Tally() for contender in contenders}
    for index in range(rounds):
        chunk = items[index::rounds]
        if not chunk:
            continue
        for contender in contenders:
            _turn(contender, chunk, tallies[contender.label])
    return tallies


def _turn(contender: Contender[T], chunk: Sequence[T], tally: Tally) -> None:
    probes = {"client": time.process_time, **contender.probes}
    before = {name: probe() for name, probe in probes.items()}
    per_second = contender.measure(chunk)
    for name, probe in probes.items():
        tally.cpu[name] = tally.cpu.get(name, 0.0) + probe() - before[name]
    tally.items += len(chunk)
    tally.seconds += len(chunk) / per_second
