"""One socket from a kombu transport (or the result backend) to the supervisor.

A ``Link`` speaks Coda's framing and handshake (``coda.protocol``) over a
non-blocking socket and offers three things: ``call`` (send a request, block
for the answer with its ``req_id``), ``send`` (fire and forget: publish, ack,
reject, qos), and a queue of *events* (pushed ``Deliver`` frames) that
arrive between answers and wait there until the transport dispatches them.

Writing never blocks on a full socket while the supervisor waits for us to
read: ``_write`` selects for both directions and reads whatever arrives, so
a consumer publishing a large message while deliveries are pushed to it
cannot deadlock with the supervisor's backpressure.

Fork safety: a link remembers the pid that opened it. In a forked child
(Celery's prefork pool) the inherited socket belongs to the parent's
connection, so the child never writes to it; it closes its copy of the
descriptor and opens its own connection on first use.

Reconnecting: each connection made is a new ``generation``. A link made
with ``reconnect=True`` (the result backend's: every request stands alone)
connects again on its next use after a loss; one made with
``reconnect=False`` (a kombu transport's: channels, consumers and delivery
tags belong to one connection of the supervisor) keeps raising
``ConnectionLostError`` until kombu reconnects the transport, which makes a
new link.
"""

from __future__ import annotations

import itertools
import os
import select
import socket
import ssl
import threading
import time
from collections import deque
from typing import Any, NoReturn

from ..._handshake import HANDSHAKE_TIMEOUT, Handshake
from ..._tls import client_context, open_socket
from ...broker.messages import CLIENT_CODEC
from ...errors import (
    CodaError,
    ConnectionLostError,
    RequestRefusedError,
    ResultTimeoutError,
)
from ...messages import Error, WireMessage
from ...protocol import FrameDecoder, encode_message

__all__ = ["Link", "tls_context"]

READ_SIZE = 1 << 20
TOKEN_HINT = "put it in the broker URL (coda://:TOKEN@HOST:PORT) or set CODA_TOKEN"
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


def tls_context(option: Any) -> ssl.SSLContext | None:
    """kombu's ``ssl=`` (Celery's ``broker_use_ssl``): True, an SSLContext, or
    a dict with ``ca_certs``, ``certfile``, ``keyfile``, ``cert_reqs``."""
    if not isinstance(option, dict):
        return client_context(option or None)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=option.get("ca_certs"))
    if option.get("certfile"):
        context.load_cert_chain(option["certfile"], option.get("keyfile"))
    if option.get("cert_reqs") == ssl.CERT_NONE:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class Link:
    def __init__(
        self,
        address: str,
        *,
        token: str = "",
        connect_timeout: float = 10.0,
        tls: ssl.SSLContext | None = None,
        reconnect: bool = True,
    ) -> None:
        self.address = address
        self.reconnect = reconnect
        self.generation = 0  # connections made so far
        self.token = token
        self.connect_timeout = connect_timeout
        self.tls = tls
        self.events: deque[WireMessage] = deque()
        self._sock: socket.socket | None = None
        self._pid = 0
        self._decoder = FrameDecoder()
        self._pending: set[int] = set()
        self._replies: dict[int, WireMessage] = {}
        self._refusal: Error | None = None
        self._greeting: Handshake | None = None  # until the supervisor welcomes us
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    # -- connection -----------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._sock is not None and self._pid == os.getpid()

    def fileno(self) -> int:
        return self._socket().fileno()

    def connect(self) -> None:
        with self._lock:
            self._forget_socket()
            sock = open_socket(self.address, self.tls, self.connect_timeout)
            sock.setblocking(False)
            self._sock, self._pid = sock, os.getpid()
            self._decoder = FrameDecoder()
            self.events.clear()
            self._pending.clear()
            self._replies.clear()
            self.generation += 1
            self._handshake()

    def _handshake(self) -> None:
        """Coda's handshake (``coda._handshake``): a foreign server or a refused
        token is named the way the clients name it."""
        greeting = self._greeting = Handshake(
            self.address, token=self.token, pid=os.getpid(), token_hint=TOKEN_HINT
        )
        self._write(greeting.hello)
        wait = min(self.connect_timeout, HANDSHAKE_TIMEOUT)
        deadline = time.monotonic() + wait
        while self._greeting is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise greeting.timed_out(wait)
            self._read(remaining)

    def close(self) -> None:
        with self._lock:
            self._forget_socket()

    def _forget_socket(self) -> None:
        if self._sock is not None:
            self._sock.close()  # in a forked child this closes only the child's descriptor
        self._sock = None

    def _socket(self) -> socket.socket:
        lost = self._sock is None and self.generation and self._pid == os.getpid()
        if lost and not self.reconnect:
            raise ConnectionLostError(
                f"the connection to the Coda supervisor at {self.address} was lost"
            )
        if self._sock is None or self._pid != os.getpid():
            self.connect()
        assert self._sock is not None
        return self._sock

    # -- requests -------------------------------------------------------------

    def next_id(self) -> int:
        return next(self._ids)

    def send(self, message: WireMessage) -> None:
        """Write one message; never waits for an answer."""
        with self._lock:
            self._write(encode_message(message))

    def call(self, message: WireMessage, timeout: float | None = None) -> WireMessage:
        """Send a request (it has a ``req_id``) and return its answer."""
        req_id = getattr(message, "req_id", None)
        if not isinstance(req_id, int):
            raise TypeError(f"{type(message).__name__} is not a request: it has no req_id")
        with self._lock:
            self._socket()  # (re)connect first: connecting forgets pending requests
            self._pending.add(req_id)
            try:
                self._write(encode_message(message))
                return self.wait_reply({req_id}, timeout)
            finally:
                self._pending.discard(req_id)

    def expect(self, req_id: int) -> None:
        """Route a future answer to ``req_id`` to ``wait_reply`` (pipelining)."""
        with self._lock:
            self._socket()
            self._pending.add(req_id)

    def wait_reply(self, req_ids: set[int], timeout: float | None = None) -> WireMessage:
        """The first answer to any of ``req_ids``; other pushes become events."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                for req_id in req_ids:
                    reply = self._replies.pop(req_id, None)
                    if reply is not None:
                        self._pending.discard(req_id)
                        return reply
                refusal, self._refusal = self._refusal, None
                if refusal is not None:
                    raise RequestRefusedError(refusal.code, refusal.message)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise ResultTimeoutError("the supervisor did not answer in time")
                self._read(remaining)

    def abandon(self, req_ids: set[int]) -> None:
        """Answers to these requests will be dropped when they arrive."""
        self._pending.difference_update(req_ids)
        for req_id in req_ids:
            self._replies.pop(req_id, None)

    # -- reading --------------------------------------------------------------

    def read_available(self) -> None:
        """Read what the socket holds now, without waiting (hub callbacks)."""
        with self._lock:
            self._read(0.0)

    def wait_readable(self, timeout: float | None) -> None:
        with self._lock:
            self._read(timeout)

    def _read(self, timeout: float | None) -> None:
        """Take what arrives within ``timeout``. Over TLS, read until the
        socket would block: decrypted bytes held by the TLS layer do not make
        the descriptor readable again."""
        sock = self._socket()
        tls = isinstance(sock, ssl.SSLSocket)
        if (timeout is None or timeout > 0) and not (
            isinstance(sock, ssl.SSLSocket) and sock.pending()
        ):
            readable, _, _ = select.select([sock], [], [], timeout)
            if not readable:
                return
        while True:
            try:
                data = sock.recv(READ_SIZE)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(str(exc))
            if not data:
                self._lost(None)
            self._take(data)
            if len(data) < READ_SIZE and not tls:
                return

    def _take(self, data: bytes) -> None:
        if self._greeting is not None:
            outcome = self._greeting.receive_data(data)
            if outcome is None:
                return
            data, self._greeting = self._greeting.trailing, None
            if isinstance(outcome, CodaError):
                self._forget_socket()
                raise outcome
        for frame in self._decoder.feed(data):
            message = CLIENT_CODEC.decode(frame)
            req_id = getattr(message, "req_id", None)
            if req_id is not None and req_id in self._pending:
                self._replies[req_id] = message
            elif req_id is None and isinstance(message, Error) and self._pending:
                self._refusal = message  # a request we sent was not even a valid message
            elif req_id is None:
                self.events.append(message)
            # else: the answer to a request that timed out; dropped

    def _write(self, data: bytes | bytearray) -> None:
        sock = self._socket()
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except _WOULD_BLOCK:
                sent = 0
            except OSError as exc:
                self._lost(str(exc))
            view = view[sent:]
            if view:
                readable, _, _ = select.select([sock], [sock], [], None)
                if readable:
                    self._read(0.0)

    def _lost(self, why: str | None) -> NoReturn:
        """``why`` is None when the supervisor closed the connection."""
        self._forget_socket()
        greeting, self._greeting = self._greeting, None
        if greeting is not None:
            raise greeting.closed(why)
        why = why or "the supervisor closed the connection"
        raise ConnectionLostError(f"lost the Coda supervisor at {self.address}: {why}")
