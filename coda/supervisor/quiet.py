"""Logging that an adversary cannot turn into a flood.

Some errors repeat as fast as a peer can cause them: a full descriptor
table makes stock asyncio's accept loop report ``socket.accept() out of
system resource`` many times a millisecond (measured: 211 KiB of log a
second, on top of the CPU it spins), and a guesser's wrong tokens or a
crowd of idle connections each close a connection. ``Quieter`` lets one
record per kind through every ``interval`` seconds and says, with the next
one, how many it held back; ``QuietLoopErrors`` applies it to an event
loop's exception handler.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["INTERVAL", "QuietLoopErrors", "Quieter"]

INTERVAL = 10.0  # seconds between two records of the same kind
MAX_KINDS = 256


class Quieter:
    """Decides which records of each kind are written."""

    def __init__(self, interval: float = INTERVAL, now: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._now = now
        self._kinds: OrderedDict[Hashable, tuple[float, int]] = OrderedDict()  # last, held back

    def let_through(self, kind: Hashable) -> int | None:
        """None to hold this record back; else write it, and say how many of
        its kind were held back since the last one written (maybe 0)."""
        now = self._now()
        last, held = self._kinds.get(kind, (float("-inf"), 0))
        if now - last < self.interval:
            self._kinds[kind] = (last, held + 1)
            return None
        self._kinds[kind] = (now, 0)
        self._kinds.move_to_end(kind)
        while len(self._kinds) > MAX_KINDS:
            self._kinds.popitem(last=False)
        return held

    @staticmethod
    def suffix(held: int, interval: float = INTERVAL) -> str:
        """What to append to a record after ``held`` others were held back."""
        return f" ({held} more like it in the last {interval:.0f}s not logged)" if held else ""


class QuietLoopErrors:
    """An event loop's exception handler: the default one, quietened per message."""

    def __init__(self, quieter: Quieter | None = None) -> None:
        self.quieter = quieter or Quieter()

    def __call__(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        held = self.quieter.let_through((message, type(context.get("exception"))))
        if held is None:
            return
        if held:
            context = {**context, "message": message + Quieter.suffix(held, self.quieter.interval)}
        loop.default_exception_handler(context)
