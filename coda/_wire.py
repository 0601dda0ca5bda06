"""asyncio edge of the protocol: frames in, messages out, writes batched.

``FramedProtocol`` owns one connection. Incoming bytes go through the pure
``FrameDecoder``; each decoded message is handed to ``message_received``.
Outgoing messages are encoded at once, straight into one buffer, written at
the end of the event-loop turn (one ``write`` per turn), so a burst of
replies costs one system call instead of one each, and a payload is copied
once on its way out (into that buffer). The buffer is handed to the
transport and never touched again (uvloop keeps a view of it until sent): the
next turn starts a new one. Incoming frames are views of what was read (see
``coda.protocol``).

Backpressure (``read_backpressure=True``, used for the supervisor's client
connections): a peer that sends requests but does not read the replies
would make us buffer replies without bound. So once the output waiting for
that peer passes ``HIGH_WATER`` we stop handling its frames and stop reading
its socket; both resume when the output drains below ``LOW_WATER``. What is
held meanwhile is bounded: at most one read's worth of undecoded frames, one
partial frame (below the frame limit) and about ``HIGH_WATER`` of output.
The peer's own sends then block in its kernel buffers, and other
connections are served as usual. Workers and clients do not pause their
reading: two ends that both stop reading while both have output pending
would wait on each other forever.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections import deque
from typing import Any, cast

from .errors import ConfigurationError, ProtocolError
from .messages import Error, Message, WireMessage
from .protocol import (
    CORE_CODEC,
    DEFAULT_FRAME_LIMIT,
    Frame,
    FrameDecoder,
    MessageCodec,
    encode_message_into,
)

__all__ = ["HIGH_WATER", "LOW_WATER", "FramedProtocol", "bind_failure", "parse_address"]

log = logging.getLogger("coda.wire")

HIGH_WATER = 256 * 1024
LOW_WATER = 64 * 1024


class FramedProtocol(asyncio.Protocol):
    """Base for every Coda connection (supervisor, worker and client side)."""

    def __init__(
        self,
        frame_limit: int = DEFAULT_FRAME_LIMIT,
        *,
        read_backpressure: bool = False,
        codec: MessageCodec[Any] = CORE_CODEC,
    ) -> None:
        # What ``message_received`` is given: a subclass that passes a codec
        # wider than the core's widens its ``message_received`` to match.
        self.codec = codec
        self.decoder = FrameDecoder(frame_limit)
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.Event()
        self._outbox = bytearray()
        self._frames: deque[Frame] = deque()
        self._read_backpressure = read_backpressure
        self._reading_paused = False
        self._write_paused = False
        self._writable = asyncio.Event()
        self._writable.set()

    # -- asyncio callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._read_backpressure:
            self.transport.set_write_buffer_limits(high=HIGH_WATER, low=LOW_WATER)
        self.on_connected()

    def data_received(self, data: bytes) -> None:
        try:
            self._frames.extend(self.decoder.feed(data))
        except ProtocolError as exc:
            self._frames.clear()
            self.fail(exc, code="bad_frame")
            return
        self._process_frames()

    def _process_frames(self) -> None:
        """Handle held frames in order, until none is left or the peer has
        stopped reading what we send it (then pause reading it)."""
        frames = self._frames
        while frames:
            transport = self.transport
            if transport is None or transport.is_closing():
                frames.clear()
                return
            if self._read_backpressure and self.congested:
                if not self._reading_paused:
                    self._reading_paused = True
                    transport.pause_reading()
                return
            frame = frames.popleft()
            try:
                message = self.codec.decode(frame)
            except ProtocolError as exc:
                self.on_bad_message(exc)
                continue
            self.message_received(message)
        transport = self.transport
        if self._reading_paused and transport is not None and not transport.is_closing():
            self._reading_paused = False
            transport.resume_reading()

    def _drained(self) -> None:
        if self._reading_paused and not self.congested:
            self._process_frames()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self._outbox = bytearray()
        self._frames.clear()
        self.closed.set()
        self._writable.set()
        self.on_closed(exc)

    def pause_writing(self) -> None:
        self._write_paused = True
        self._writable.clear()

    def resume_writing(self) -> None:
        self._write_paused = False
        self._writable.set()
        self._drained()

    # -- for subclasses ---------------------------------------------------

    def on_connected(self) -> None:
        """The connection is up."""

    def message_received(self, message: Message) -> None:
        raise NotImplementedError

    def on_bad_message(self, exc: ProtocolError) -> None:
        """A frame arrived whole but is not a valid message: the stream is
        still in sync, so refuse the message and keep the connection."""
        self.send(Error(code="bad_message", message=str(exc)))

    def on_closed(self, exc: Exception | None) -> None:
        """The connection is gone."""

    def log_failure(self, exc: Exception, code: str) -> None:
        """``fail`` is closing the connection for ``exc``."""
        log.warning("closing connection: %s", exc)

    # -- sending ----------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    @property
    def write_paused(self) -> bool:
        return self._write_paused

    @property
    def reading_paused(self) -> bool:
        """True while backpressure holds this peer's frames back."""
        return self._reading_paused

    @property
    def congested(self) -> bool:
        """Output for this peer has piled up past the high-water mark."""
        if self.transport is None:
            return False
        pending = len(self._outbox) + self.transport.get_write_buffer_size()
        return self._write_paused or pending > HIGH_WATER

    def send(self, message: WireMessage) -> None:
        """Queue a message; it is written at the end of this loop turn."""
        if self.transport is None:
            return
        if not self._outbox:
            asyncio.get_running_loop().call_soon(self._flush)
        encode_message_into(message, self._outbox)

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, bytearray()
        if self.transport is not None and outbox:
            self.transport.write(outbox)
        self._drained()

    async def wait_writable(self) -> None:
        await self._writable.wait()

    def fail(self, exc: Exception, code: str) -> None:
        """Tell the peer what went wrong, then close: the stream is unusable."""
        self.log_failure(exc, code)
        self.send(Error(code=code, message=str(exc)))
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def close(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.close()


def bind_failure(doing: str, address: str, flag: str, exc: OSError) -> ConfigurationError:
    """One line for the operator when an address cannot be bound: which
    address, why, and the flag to change (the supervisor's ``--listen``,
    the dashboard's ``--http``)."""
    if exc.errno == errno.EADDRINUSE:
        why = "the address is already in use (another supervisor, or another program, holds it)"
    else:
        why = exc.strerror or str(exc)
    return ConfigurationError(
        f"cannot {doing} {address}: {why}; pick another with {flag} HOST:PORT"
    )


def parse_address(address: str) -> tuple[str, Any]:
    """``host:port`` → ("tcp", (host, port)); a path → ("unix", path).

    A path is anything containing a slash or starting with ``unix:``.
    """
    if address.startswith("unix:"):
        return "unix", address[5:]
    if "/" in address:
        return "unix", address
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigurationError(f"address {address!r} is neither host:port nor a Unix socket path")
    return "tcp", (host.strip("[]") or "127.0.0.1", int(port))
