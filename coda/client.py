"""The blocking client: start tasks and workflows, wait for their results.

One socket, one request at a time (a lock makes it safe to share between
threads). For many concurrent runs from one process use ``AsyncClient``.
"""

from __future__ import annotations

import itertools
import socket
import threading
import time
from collections.abc import Mapping
from typing import Any

from ._client_common import build_submit, default_address, outcome, refusal
from ._tls import SSLOption, client_context, hung_up_in_handshake, open_socket
from .errors import (
    ConnectionLostError,
    HandshakeError,
    ResultTimeoutError,
)
from .messages import (
    PROTOCOL_VERSION,
    Accepted,
    Await,
    Error,
    Finished,
    Hello,
    Message,
    StatusReply,
    StatusRequest,
    Welcome,
)
from .protocol import FrameDecoder, decode_message, encode_message
from .serialization import DEFAULT_SERIALIZER

__all__ = ["Client", "RunHandle"]


class RunHandle:
    """A submitted run: its id, and a way to wait for its result."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends; return its value or raise its failure."""
        return self.client._wait(self.run_id, timeout)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id}>"


class Client:
    """``Client("127.0.0.1:42069")`` or ``Client("/path/to/coda.sock")``.

    Without an address, ``CODA_SUPERVISOR`` or 127.0.0.1:42069 is used.
    ``ssl=True`` (system CAs) or an ``ssl.SSLContext`` speaks TLS to a
    supervisor started with ``--tls-cert``.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        token: str | None = None,
        serializer: str = DEFAULT_SERIALIZER,
        connect_timeout: float = 10.0,
        ssl: SSLOption = None,
    ) -> None:
        self.address = default_address(address)
        self.token = token
        self.serializer = serializer
        self.connect_timeout = connect_timeout
        self._tls = client_context(ssl)
        self._sock: socket.socket | None = None
        self._decoder = FrameDecoder()
        self._inbox: list[Message] = []
        self._lock = threading.RLock()
        self._req_ids = itertools.count(1)

    # -- public API -------------------------------------------------------

    def submit(
        self,
        target: object,
        args: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        queue: str | None = None,
        not_before: float | None = None,
    ) -> RunHandle:
        """Start a task or workflow; return at once with its handle.

        ``run_id`` makes the submission idempotent (a second one with the same
        id returns the first run); ``not_before`` (epoch seconds) delays it.
        """
        with self._lock:
            req_id = next(self._req_ids)
            request = build_submit(
                req_id,
                target,
                args,
                serializer=self.serializer,
                run_id=run_id,
                queue=queue,
                wait=False,
                not_before=not_before,
            )
            reply = self._exchange(request, req_id, None, name=request.name)
            assert isinstance(reply, Accepted)
            return RunHandle(self, reply.run_id)

    def run(
        self,
        target: object,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        queue: str | None = None,
    ) -> Any:
        """Start a task or workflow and block for its result."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            req_id = next(self._req_ids)
            request = build_submit(
                req_id,
                target,
                args,
                serializer=self.serializer,
                run_id=None,
                queue=queue,
                wait=True,
            )
            reply = self._exchange(request, req_id, deadline, name=request.name)
            while not isinstance(reply, Finished):
                reply = self._receive(req_id, deadline)
            return outcome(reply)

    def handle(self, run_id: str) -> RunHandle:
        """The handle of an earlier run, by id."""
        return RunHandle(self, run_id)

    def status(self) -> dict[str, Any]:
        with self._lock:
            req_id = next(self._req_ids)
            reply = self._exchange(StatusRequest(req_id=req_id), req_id, None)
            assert isinstance(reply, StatusReply)
            return reply.status

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------

    def _wait(self, run_id: str, timeout: float | None) -> Any:
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            req_id = next(self._req_ids)
            reply = self._exchange(Await(req_id=req_id, run_id=run_id), req_id, deadline)
            assert isinstance(reply, Finished)
            return outcome(reply)

    def _exchange(
        self, request: Message, req_id: int, deadline: float | None, name: str | None = None
    ) -> Message:
        sock = self._connected()
        try:
            sock.sendall(encode_message(request))
        except OSError as exc:
            self._drop()
            raise ConnectionLostError(f"lost the supervisor at {self.address}: {exc}") from exc
        reply = self._receive(req_id, deadline)
        if isinstance(reply, Error):
            raise refusal(reply, name)
        return reply

    def _receive(self, req_id: int, deadline: float | None) -> Message:
        """The next message answering ``req_id``; others (late answers to
        requests that timed out) are dropped."""
        while True:
            while self._inbox:
                message = self._inbox.pop(0)
                if getattr(message, "req_id", None) == req_id:
                    return message
                if isinstance(message, Error) and message.req_id is None:
                    self._drop()
                    raise ConnectionLostError(
                        f"supervisor closed the connection: {message.message}"
                    )
            self._read_more(deadline)

    def _read_more(self, deadline: float | None) -> None:
        sock = self._connected()
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise ResultTimeoutError("the result did not arrive before the timeout")
        sock.settimeout(remaining)
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            raise ResultTimeoutError("the result did not arrive before the timeout") from None
        except OSError as exc:
            self._drop()
            raise ConnectionLostError(f"lost the supervisor at {self.address}: {exc}") from exc
        if not data:
            self._drop()
            raise ConnectionLostError(f"the supervisor at {self.address} closed the connection")
        self._inbox.extend(decode_message(frame) for frame in self._decoder.feed(data))

    def _connected(self) -> socket.socket:
        if self._sock is None:
            self._sock = self._open()
        return self._sock

    def _open(self) -> socket.socket:
        sock = open_socket(self.address, self._tls, self.connect_timeout)
        self._decoder = FrameDecoder()
        self._inbox = []
        hello = Hello(version=PROTOCOL_VERSION, role="client", token=self.token or "")
        sock.sendall(encode_message(hello))
        self._sock = sock
        try:
            reply = self._receive_any(time.monotonic() + self.connect_timeout)
        except ConnectionLostError:
            raise hung_up_in_handshake(self.address) from None
        if isinstance(reply, Error):
            self._drop()
            raise HandshakeError(f"supervisor refused the connection: {reply.message}")
        if not isinstance(reply, Welcome):
            self._drop()
            raise HandshakeError(f"expected a welcome, got {type(reply).__name__}")
        return sock

    def _receive_any(self, deadline: float) -> Message:
        while not self._inbox:
            self._read_more(deadline)
        return self._inbox.pop(0)

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
