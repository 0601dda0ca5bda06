"""The asyncio client: many concurrent runs over one connection.

An asyncio protocol moves bytes between the socket and an I/O-free
``ClientConnection`` and hands each answer to the call waiting for it.
Requests made in one event-loop turn leave in one write.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Mapping
from ssl import SSLError
from typing import Any, TypeVar, cast

from ._client_common import build_submit, default_address, outcome, submit_timed_out
from ._connection import (
    Answer,
    ClientConnection,
    ConnectionFailed,
    Event,
    Refused,
    Reply,
    Request,
    Welcomed,
)
from ._handshake import HANDSHAKE_TIMEOUT
from ._tls import SSLOption, client_context, tls_failure
from ._wire import parse_address
from .errors import ConfigurationError, ConnectionLostError, ResultTimeoutError
from .messages import (
    Accepted,
    Await,
    CancelReply,
    CancelRun,
    Finished,
    JobView,
    PurgeQueue,
    PurgeReply,
    RunsReply,
    RunsRequest,
    ShowReply,
    ShowRequest,
    StatusReply,
    StatusRequest,
)
from .serialization import DEFAULT_SERIALIZER

__all__ = ["AsyncClient", "AsyncRunHandle"]

R = TypeVar("R")


class _Call:
    """The answers one request expects: an acknowledgement and/or an end."""

    __slots__ = ("accepted", "finished", "req_id")

    def __init__(self, loop: asyncio.AbstractEventLoop, req_id: int) -> None:
        self.req_id = req_id
        self.accepted: asyncio.Future[Reply] = loop.create_future()  # the first answer
        self.finished: asyncio.Future[Finished] = loop.create_future()

    def fail(self, exc: BaseException) -> None:
        for future in (self.accepted, self.finished):
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: not every call awaits both


class _ClientProtocol(asyncio.Protocol):
    def __init__(self, connection: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        self.connection = connection
        self.calls: dict[int, _Call] = {}
        self.welcomed: asyncio.Future[None] = loop.create_future()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self._flush_due = False

    # -- asyncio callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._flush()  # the Hello

    def data_received(self, data: bytes) -> None:
        self._handle(self.connection.receive_data(data))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.closed.set()
        self._handle(self.connection.connection_lost(None if exc is None else str(exc)))

    # -- requests ---------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def request(self, request: Request) -> _Call:
        loop = asyncio.get_running_loop()
        call = self.calls[request.req_id] = _Call(loop, request.req_id)
        self.connection.send(request)
        if not self._flush_due:
            self._flush_due = True
            loop.call_soon(self._flush)
        return call

    def forget(self, req_id: int) -> None:
        self.calls.pop(req_id, None)
        self.connection.forget(req_id)

    def handshake_timed_out(self, seconds: float) -> None:
        self._handle(self.connection.handshake_timed_out(seconds))

    def close(self) -> None:
        self._flush()
        if self.transport is not None:
            self.transport.close()

    def _flush(self) -> None:
        self._flush_due = False
        data = self.connection.data_to_send()
        if data and self.transport is not None:
            self.transport.write(data)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            match event:
                case Welcomed():
                    self.welcomed.set_result(None)
                case Answer():
                    self._answered(event)
                case Refused(req_id=req_id, error=error):
                    call = self.calls.pop(req_id, None)
                    if call is not None:
                        call.fail(error)
                case ConnectionFailed(error=error):
                    self._failed(error)

    def _answered(self, answer: Answer) -> None:
        if answer.final:
            call = self.calls.pop(answer.req_id, None)
        else:
            call = self.calls.get(answer.req_id)
        if call is None:
            return
        if isinstance(answer.message, Finished):
            call.finished.set_result(answer.message)
        else:
            call.accepted.set_result(answer.message)

    def _failed(self, error: Exception) -> None:
        if not self.welcomed.done():
            self.welcomed.set_exception(error)
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.fail(error)
        if self.transport is not None:
            self.transport.close()


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
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        ssl: SSLOption = None,
    ) -> None:
        self.address = default_address(address)
        self.token = token
        self.serializer = serializer
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self._tls = client_context(ssl)
        self._conn: _ClientProtocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def submit(
        self,
        target: object,
        args: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> AsyncRunHandle:
        """See ``Client.submit``."""
        conn = await self._connected()
        call = self._submit(conn, target, args, run_id=run_id, queue=queue, wait=False)
        try:
            accepted = await asyncio.wait_for(asyncio.shield(call.accepted), timeout)
        except TimeoutError:
            assert timeout is not None
            conn.forget(call.req_id)  # its answer, should it come, is dropped
            raise submit_timed_out(timeout) from None
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
        conn = await self._connected()
        call = self._submit(conn, target, args, run_id=None, queue=queue, wait=True)
        return outcome(await _finished(conn, call, timeout))

    def handle(self, run_id: str) -> AsyncRunHandle:
        return AsyncRunHandle(self, run_id)

    async def status(self) -> dict[str, Any]:
        reply = await self._ask(lambda req_id: StatusRequest(req_id=req_id), StatusReply)
        return reply.status

    async def cancel(self, run_id: str, *, terminate: bool = False) -> str:
        """See ``Client.cancel``."""
        ask = lambda req_id: CancelRun(req_id=req_id, run_id=run_id, terminate=terminate)  # noqa: E731
        return (await self._ask(ask, CancelReply)).state

    async def runs(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[JobView]:
        """See ``Client.runs``."""
        reply = await self._ask(
            lambda req_id: RunsRequest(req_id, state=state, name=name, since=since, limit=limit),
            RunsReply,
        )
        return reply.runs

    async def show(self, run_id: str) -> tuple[JobView, list[JobView]]:
        """See ``Client.show``."""
        reply = await self._ask(lambda req_id: ShowRequest(req_id=req_id, run_id=run_id), ShowReply)
        return reply.run, reply.steps

    async def purge(self, queue: str) -> int:
        """See ``Client.purge``."""
        reply = await self._ask(lambda req_id: PurgeQueue(req_id=req_id, queue=queue), PurgeReply)
        return reply.purged

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

    async def _ask(self, build: Callable[[int], Request], kind: type[R]) -> R:
        """One request, one reply of ``kind``."""
        conn = await self._connected()
        reply = await conn.request(build(conn.connection.next_request_id())).accepted
        assert isinstance(reply, kind)
        return reply

    def _submit(
        self,
        conn: _ClientProtocol,
        target: object,
        args: Mapping[str, Any] | None,
        *,
        run_id: str | None,
        queue: str | None,
        wait: bool,
    ) -> _Call:
        req_id = conn.connection.next_request_id()
        request = build_submit(
            req_id,
            target,
            args,
            serializer=self.serializer,
            run_id=run_id,
            queue=queue,
            wait=wait,
            limit=conn.connection.frame_limit,
        )
        return conn.request(request)

    async def _wait(self, run_id: str, timeout: float | None) -> Any:
        conn = await self._connected()
        call = conn.request(Await(req_id=conn.connection.next_request_id(), run_id=run_id))
        return outcome(await _finished(conn, call, timeout))

    async def _connected(self) -> _ClientProtocol:
        if self._conn is not None and self._conn.is_open:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is None or not self._conn.is_open:
                self._conn = await self._open()
        return self._conn

    async def _open(self) -> _ClientProtocol:
        try:
            conn = await asyncio.wait_for(self._open_transport(), self.connect_timeout)
        except TimeoutError:
            raise ConnectionLostError(
                f"cannot reach the Coda supervisor at {self.address}: "
                f"no connection within {self.connect_timeout:g}s"
            ) from None
        try:
            await asyncio.wait_for(asyncio.shield(conn.welcomed), self.handshake_timeout)
        except TimeoutError:
            conn.handshake_timed_out(self.handshake_timeout)
            await conn.welcomed  # raises what the connection made of it
        return conn

    async def _open_transport(self) -> _ClientProtocol:
        loop = asyncio.get_running_loop()
        family, target = parse_address(self.address)

        def protocol() -> _ClientProtocol:
            return _ClientProtocol(ClientConnection(self.address, token=self.token or ""))

        try:
            if family == "unix":
                if self._tls is not None:
                    raise ConfigurationError("TLS applies to TCP addresses, not Unix sockets")
                _, conn = await loop.create_unix_connection(protocol, target)
            elif self._tls is not None:
                _, conn = await loop.create_connection(
                    protocol, *target, ssl=self._tls, server_hostname=target[0]
                )
            else:
                _, conn = await loop.create_connection(protocol, *target)
        except SSLError as exc:
            raise tls_failure(self.address, exc) from None
        except OSError as exc:
            raise ConnectionLostError(
                f"cannot reach the Coda supervisor at {self.address}: {exc}"
            ) from exc
        return conn


async def _finished(conn: _ClientProtocol, call: _Call, timeout: float | None) -> Finished:
    try:
        return await asyncio.wait_for(asyncio.shield(call.finished), timeout)
    except TimeoutError:
        conn.forget(call.req_id)  # its answer, should it come, is dropped
        raise ResultTimeoutError("the result did not arrive before the timeout") from None
