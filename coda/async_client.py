"""The asyncio client: many concurrent runs over one connection."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping
from ssl import SSLError
from typing import Any

from ._client_common import build_submit, default_address, outcome, refusal
from ._tls import SSLOption, client_context, hung_up_in_handshake, tls_failure
from ._wire import FramedProtocol, parse_address
from .errors import (
    ConfigurationError,
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
from .serialization import DEFAULT_SERIALIZER

__all__ = ["AsyncClient", "AsyncRunHandle"]


class _Call:
    """The answers one request expects: an acknowledgement and/or an end."""

    __slots__ = ("accepted", "finished", "name")

    def __init__(self, loop: asyncio.AbstractEventLoop, name: str | None) -> None:
        self.accepted: asyncio.Future[Message] = loop.create_future()
        self.finished: asyncio.Future[Finished] = loop.create_future()
        self.name = name

    def fail(self, exc: BaseException) -> None:
        for future in (self.accepted, self.finished):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: not every call awaits both


class _ClientProtocol(FramedProtocol):
    def __init__(self) -> None:
        super().__init__()
        self.calls: dict[int, _Call] = {}
        self.welcomed: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    def message_received(self, message: Message) -> None:
        match message:
            case Finished(req_id=req_id):
                call = self.calls.pop(req_id, None)
                if call is not None and not call.finished.done():
                    call.finished.set_result(message)
            case Accepted(req_id=req_id) | StatusReply(req_id=req_id):
                call = self.calls.get(req_id)
                if call is not None and not call.accepted.done():
                    call.accepted.set_result(message)
                    if not isinstance(message, Accepted) or call.finished.cancelled():
                        self.calls.pop(req_id, None)
            case Error(req_id=int() as req_id):
                call = self.calls.pop(req_id, None)
                if call is not None:
                    call.fail(refusal(message, call.name))
            case Welcome() | Error() if not self.welcomed.done():
                self.welcomed.set_result(message)
            case Error():
                self.fail_all(ConnectionLostError(f"supervisor error: {message.message}"))

    def on_closed(self, exc: Exception | None) -> None:
        error = ConnectionLostError("the connection to the supervisor closed")
        if not self.welcomed.done():
            self.welcomed.set_exception(error)
        self.fail_all(error)

    def fail_all(self, exc: BaseException) -> None:
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.fail(exc)


class AsyncRunHandle:
    def __init__(self, client: AsyncClient, run_id: str) -> None:
        self.client = client
        self.run_id = run_id

    async def result(self, timeout: float | None = None) -> Any:
        return await self.client._wait(self.run_id, timeout)

    def __repr__(self) -> str:
        return f"<AsyncRunHandle {self.run_id}>"


class AsyncClient:
    """``async with AsyncClient(address) as client: await client.run(...)``.

    ``ssl=True`` or an ``ssl.SSLContext`` for a supervisor serving TLS.
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
        self._conn: _ClientProtocol | None = None
        self._connecting: asyncio.Lock | None = None
        self._req_ids = itertools.count(1)

    async def submit(
        self,
        target: object,
        args: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        queue: str | None = None,
    ) -> AsyncRunHandle:
        call = await self._call(target, args, run_id=run_id, queue=queue, wait=False)
        accepted = await call.accepted
        assert isinstance(accepted, Accepted)
        return AsyncRunHandle(self, accepted.run_id)

    async def run(
        self,
        target: object,
        args: Mapping[str, Any] | None = None,
        *,
        timeout: float | None = None,
        queue: str | None = None,
    ) -> Any:
        call = await self._call(target, args, run_id=None, queue=queue, wait=True)
        return outcome(await _within(call.finished, timeout))

    def handle(self, run_id: str) -> AsyncRunHandle:
        return AsyncRunHandle(self, run_id)

    async def status(self) -> dict[str, Any]:
        conn = await self._connected()
        req_id = next(self._req_ids)
        call = conn.calls[req_id] = _Call(asyncio.get_running_loop(), None)
        conn.send(StatusRequest(req_id=req_id))
        reply = await call.accepted
        assert isinstance(reply, StatusReply)
        return reply.status

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            await self._conn.closed.wait()
            self._conn = None

    async def __aenter__(self) -> AsyncClient:
        await self._connected()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- internals --------------------------------------------------------

    async def _call(
        self,
        target: object,
        args: Mapping[str, Any] | None,
        *,
        run_id: str | None,
        queue: str | None,
        wait: bool,
    ) -> _Call:
        conn = await self._connected()
        req_id = next(self._req_ids)
        request = build_submit(
            req_id, target, args, serializer=self.serializer, run_id=run_id, queue=queue, wait=wait
        )
        call = conn.calls[req_id] = _Call(asyncio.get_running_loop(), request.name)
        conn.send(request)
        return call

    async def _wait(self, run_id: str, timeout: float | None) -> Any:
        conn = await self._connected()
        req_id = next(self._req_ids)
        call = conn.calls[req_id] = _Call(asyncio.get_running_loop(), None)
        conn.send(Await(req_id=req_id, run_id=run_id))
        try:
            return outcome(await _within(call.finished, timeout))
        finally:
            conn.calls.pop(req_id, None)

    async def _connected(self) -> _ClientProtocol:
        if self._conn is not None and self._conn.is_open:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or not self._conn.is_open:
                self._conn = await asyncio.wait_for(self._open(), self.connect_timeout)
        return self._conn

    async def _open(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        family, target = parse_address(self.address)
        try:
            if family == "unix":
                if self._tls is not None:
                    raise ConfigurationError("TLS applies to TCP addresses, not Unix sockets")
                _, conn = await loop.create_unix_connection(_ClientProtocol, target)
            elif self._tls is not None:
                _, conn = await loop.create_connection(
                    _ClientProtocol, *target, ssl=self._tls, server_hostname=target[0]
                )
            else:
                _, conn = await loop.create_connection(_ClientProtocol, *target)
        except SSLError as exc:
            raise tls_failure(self.address, exc) from None
        except OSError as exc:
            raise ConnectionLostError(
                f"cannot reach the Coda supervisor at {self.address}: {exc}"
            ) from exc
        conn.send(Hello(version=PROTOCOL_VERSION, role="client", token=self.token or ""))
        try:
            reply = await conn.welcomed
        except ConnectionLostError:
            raise hung_up_in_handshake(self.address) from None
        if isinstance(reply, Error):
            conn.close()
            raise HandshakeError(f"supervisor refused the connection: {reply.message}")
        return conn


async def _within(future: asyncio.Future[Finished], timeout: float | None) -> Finished:
    try:
        return await asyncio.wait_for(asyncio.shield(future), timeout)
    except TimeoutError:
        raise ResultTimeoutError("the result did not arrive before the timeout") from None
