"""Waiting, in a test, for what a store was given to be durable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from coda.supervisor.clock import ManualClock

__all__ = ["wait_committed"]


class Durable(Protocol):
    def after_commit(self, callback: Callable[[], None]) -> None: ...


def wait_committed(store: Durable, clock: ManualClock) -> None:
    """Until what ``store`` was given is durable, by its own ``after_commit``,
    driving the manual clock (and waiting for the commit thread) as the event
    loop would."""
    done: list[bool] = []
    store.after_commit(lambda: done.append(True))
    clock.settle()
    while not done:
        clock.wait_threadsafe()
