"""An in-memory transport for driving a protocol object without sockets.

By default every write is "sent" at once. With ``hold_writes=True`` written
bytes stay in its buffer until ``drain()``, and it calls the protocol's
``pause_writing``/``resume_writing`` at its water marks as asyncio's own
transports do: a peer that does not read, in a box.
"""

from __future__ import annotations

import asyncio
from typing import Any


class FakeTransport(asyncio.Transport):
    """Collects what the connection writes; honours pause/resume and close."""

    def __init__(self, protocol: asyncio.Protocol | None = None, hold_writes: bool = False) -> None:
        super().__init__()
        self.protocol = protocol
        self.hold_writes = hold_writes
        self.written = bytearray()
        self.held = 0
        self.high = 64 * 1024
        self.low = 16 * 1024
        self.paused = False
        self.closing = False
        self.reading = True

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data
        if self.hold_writes:
            self.held += len(data)
            if self.held > self.high and not self.paused and self.protocol is not None:
                self.paused = True
                self.protocol.pause_writing()

    def writelines(self, list_of_data: Any) -> None:
        for data in list_of_data:
            self.write(data)

    def drain(self) -> None:
        """The peer read everything: empty the buffer, resume the writer."""
        self.held = 0
        if self.paused and self.protocol is not None:
            self.paused = False
            self.protocol.resume_writing()

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_write_buffer_size(self) -> int:
        return self.held

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high = 64 * 1024 if high is None else high
        self.low = self.high // 4 if low is None else low

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default
