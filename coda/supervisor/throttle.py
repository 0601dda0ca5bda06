"""Slowing down token guessing: a backoff per address after wrong tokens.

Without it a peer can try tokens as fast as it can open connections
(measured: 15,000 wrong tokens in 5 s). An address's first few failures
are free (a typo, a test of the refusal); after those, each failure locks
the address out for a time that doubles, up to ``MAX_LOCK``. While locked,
its handshakes are refused without the token being compared, so guesses
made meanwhile tell the guesser nothing and parallel connections do not
help. A success, or a quiet ``FORGET_AFTER`` seconds, clears the address.

Addresses are hosts (the port is not the peer's to keep); all Unix-socket
peers share one. At most ``MAX_TRACKED`` addresses are remembered, the
least recently failed forgotten first, so a guesser cannot grow the
supervisor's memory by changing addresses.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["FREE_FAILURES", "MAX_LOCK", "TokenThrottle"]

FREE_FAILURES = 5  # wrong tokens an address may offer before it is slowed down
FIRST_LOCK = 0.1  # seconds, after the first failure past the free ones
MAX_LOCK = 10.0
FORGET_AFTER = 60.0  # seconds without a failure, then the address starts afresh
MAX_TRACKED = 4096


@dataclass
class _Record:
    failures: int
    last: float
    locked_until: float = 0.0


class TokenThrottle:
    """Wrong tokens per address; ``now`` is a monotonic clock in seconds."""

    def __init__(self, now: Callable[[], float] = time.monotonic) -> None:
        self._now = now
        self._records: OrderedDict[str, _Record] = OrderedDict()
        self.refused_unchecked = 0  # handshakes refused while their address was locked

    def locked_for(self, address: str) -> float:
        """Seconds left before ``address`` may offer a token again (0: now)."""
        record = self._current(address)
        if record is None:
            return 0.0
        return max(0.0, record.locked_until - self._now())

    def failed(self, address: str) -> None:
        """``address`` offered a wrong token."""
        now = self._now()
        record = self._current(address) or _Record(failures=0, last=now)
        record.failures += 1
        record.last = now
        beyond = record.failures - FREE_FAILURES
        if beyond > 0:
            record.locked_until = now + min(MAX_LOCK, FIRST_LOCK * 2 ** min(beyond - 1, 32))
        self._records[address] = record
        self._records.move_to_end(address)
        while len(self._records) > MAX_TRACKED:
            self._records.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._records.pop(address, None)

    def _current(self, address: str) -> _Record | None:
        record = self._records.get(address)
        if record is not None and self._now() - record.last > FORGET_AFTER:
            del self._records[address]
            return None
        return record

    def statistics(self) -> dict[str, int]:
        return {"addresses": len(self._records), "refused_unchecked": self.refused_unchecked}
