"""How long a task that gave its delivery back waits before it gets it again.

A broker redelivers a requeued message at once. That suits the common
pattern (Celery's ``Reject(requeue=True)`` on the first delivery, success on
the redelivery), but a task that rejects every delivery then runs in a tight
loop on one core forever. So only the first requeue of an unbroken run comes
back at once; the next waits ``FIRST_PAUSE`` seconds and each one after
twice as long as the one before, up to ``MAX_PAUSE``: 0, 0.1, 0.2, 0.4, ...
25.6, 30, 30, ... A retry or a success ends the run (``Job.requeues`` is
reset by the engine).
"""

from __future__ import annotations

__all__ = ["FIRST_PAUSE", "MAX_PAUSE", "requeue_delay"]

FIRST_PAUSE = 0.1
MAX_PAUSE = 30.0


def requeue_delay(requeues: int) -> float:
    """Seconds before the delivery after the ``requeues``-th requeue in a row."""
    if requeues <= 1:
        return 0.0
    doublings = min(requeues - 2, 16)  # past the cap already; keeps the float finite
    return min(MAX_PAUSE, FIRST_PAUSE * (1 << doublings))
