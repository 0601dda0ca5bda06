"""When to try again, and after how long.

A policy is data the worker evaluates after a failure; the supervisor only
sees the resulting delay (``Failure.retry_in``) and never needs the policy.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry up to ``max_retries`` times, waiting ``delay`` seconds first.

    With ``backoff`` above 1 the wait grows geometrically per retry
    (``delay * backoff ** n``), capped at ``max_delay``. With ``jitter`` the
    wait is drawn uniformly from ``[0, wait]`` ("full jitter"), which spreads
    a thundering herd of retries the way Celery's ``retry_jitter`` does.
    """

    max_retries: int = 0
    delay: float = 1.0
    backoff: float = 1.0
    max_delay: float = 600.0
    jitter: bool = False

    def retry_in(self, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when spent.

        ``attempt`` is the 1-based number of the attempt that just failed.
        """
        if attempt > self.max_retries:
            return None
        wait = min(self.max_delay, self.delay * self.backoff ** (attempt - 1))
        if self.jitter:
            wait = random.uniform(0.0, wait)
        return max(0.0, wait)
