"""What the engine talks to and about: a peer it answers on, a worker and
the jobs leased to it, and what it knows of a registered name.

Kept apart from dispatch.py, which uses them, because most of the
supervisor's modules name them and only a few dispatch anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from ..messages import Kind, Message

__all__ = ["NameInfo", "Peer", "WorkerHandle"]


class Peer(Protocol):
    """A connection the engine can answer on."""

    @property
    def is_open(self) -> bool: ...

    def send(self, message: Message) -> None: ...


class NameInfo(Protocol):
    """What the engine needs to know about a registered name."""

    @property
    def kind(self) -> Kind: ...

    @property
    def queue(self) -> str: ...

    @property
    def timeout(self) -> float | None: ...

    @property
    def is_async(self) -> bool: ...

    @property
    def min_interval(self) -> float | None:
        """Seconds between two starts of this name (a rate limit), or None."""
        ...


@dataclass(eq=False)
class WorkerHandle:
    """One connected worker and the jobs leased to it.

    ``tasks`` holds every leased task, in the order they were sent; ``held``
    those of them the worker has not yet reported ``Started``."""

    id: int
    peer: Peer
    pid: int
    queues: tuple[str, ...]
    task_slots: int
    workflow_slots: int
    prefetch: int = 0
    tasks: dict[str, None] = field(default_factory=dict)  # an ordered set
    held: set[str] = field(default_factory=set)
    workflows: dict[str, None] = field(default_factory=dict)
    alone: dict[str, str] = field(default_factory=dict)  # kind -> its isolated job

    @property
    def started_tasks(self) -> int:
        return len(self.tasks) - len(self.held)
