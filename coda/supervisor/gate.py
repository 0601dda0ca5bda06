"""How many client connections the supervisor holds, and what the ones that
have not yet said who they are may cost it.

Every connection holds a file descriptor, and a process has a limit on them
(often 1,024): about that many idle connections that never send their
``Hello`` used to lock every new client out, and the worker pool too (it
needs descriptors to replace a worker). So:

- at most ``max_connections`` client connections are held at once (workers'
  socket pairs are not counted); one more is answered with an ``Error``
  that says so and why, then closed;
- a connection must complete its handshake within the handshake timeout
  (``SupervisorConnection`` arms the timer);
- the bytes held for connections not yet authenticated (partial ``Hello``
  frames) are bounded across all of them by ``PRE_AUTH_BUDGET``: a
  connection that takes the total past it is closed. A well-behaved
  client's ``Hello`` arrives whole and is never held (2,000 connections,
  each holding a partial 64 KiB frame, used to hold 121 MB).

``capacity`` turns the process's descriptor limit into the most connections
that can be held while descriptors remain for the rest (workers, the store,
listeners); ``raise_descriptor_limit`` first lifts the soft limit to the hard
one, as far as the system lets a process without privileges go.
"""

from __future__ import annotations

import contextlib
import resource

__all__ = [
    "DESCRIPTOR_RESERVE",
    "PRE_AUTH_BUDGET",
    "ConnectionGate",
    "capacity",
    "descriptor_limit",
    "raise_descriptor_limit",
]

PRE_AUTH_BUDGET = 4 * 1024 * 1024
DESCRIPTOR_RESERVE = 128  # listeners, the store's files, the event loop's own, extensions
DESCRIPTORS_PER_WORKER = 4  # its socket pair's end and the process's watchers, with room


def descriptor_limit() -> int:
    """The process's soft limit on open descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 2**31 - 1


def raise_descriptor_limit() -> tuple[int, int]:
    """Lift the soft descriptor limit to the hard one (often 1,024 under
    524,288); returns the limit before and after. Left as it is when the
    system refuses."""
    before = descriptor_limit()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # an infinite hard limit, capped
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return before, descriptor_limit()


def capacity(max_connections: int, descriptor_limit: int, workers: int) -> int:
    """The client connections the supervisor can hold: ``max_connections``,
    or fewer when the descriptor limit leaves room for fewer (at least 1)."""
    room = descriptor_limit - DESCRIPTOR_RESERVE - DESCRIPTORS_PER_WORKER * workers
    return max(1, min(max_connections, room))


class ConnectionGate:
    """Counts client connections against a limit, and the bytes held for
    those not yet authenticated against a budget."""

    def __init__(self, max_connections: int, pre_auth_budget: int = PRE_AUTH_BUDGET) -> None:
        self.max_connections = max_connections
        self.pre_auth_budget = pre_auth_budget
        self.open = 0
        self.pre_auth_bytes = 0
        self._held: dict[object, int] = {}  # unauthenticated connection -> bytes it holds
        self.refused = 0  # connections refused at the limit
        self.timed_out = 0  # connections closed for not completing the handshake in time
        self.over_budget = 0  # connections closed for holding too much before it

    def admit(self) -> bool:
        """A connection arrived: True if it may stay (it then counts until ``left``)."""
        if self.open >= self.max_connections:
            self.refused += 1
            return False
        self.open += 1
        return True

    def left(self) -> None:
        """An admitted connection closed."""
        self.open -= 1

    def hold(self, connection: object, size: int) -> bool:
        """``connection``, not yet authenticated, now holds ``size`` bytes (0
        once authenticated or closed); False if the total is over the budget."""
        self.pre_auth_bytes += size - self._held.pop(connection, 0)
        if size:
            self._held[connection] = size
        if self.pre_auth_bytes <= self.pre_auth_budget:
            return True
        self.over_budget += 1
        return False

    def statistics(self) -> dict[str, int]:
        return {
            "open": self.open,
            "limit": self.max_connections,
            "refused_at_limit": self.refused,
            "handshake_timeouts": self.timed_out,
            "closed_over_pre_auth_budget": self.over_budget,
            "pre_auth_bytes": self.pre_auth_bytes,
        }
