"""The blocking client: start tasks and workflows, wait for their results.

One socket, one request at a time (a lock makes it safe to share between
threads). For many concurrent runs from one process use ``AsyncClient``.
What is said on the wire, and what each answer means, is the I/O-free
``ClientConnection``'s business; this class only moves its bytes.

Results come to the client that submitted. A ``submit`` asks the supervisor
to send the run's end on the same connection once it is durable (as
``run`` does), as Celery's result consumer subscribes to a task's result
when it sends the task. Whatever the client reads while waiting for one
answer, it keeps the ends of runs whose handles are still alive, so the
usual loop (``submit`` many, then each ``result()``) pays one round trip
per run instead of two. A handle dropped unread lets its result go; a
handle of an earlier connection, or one made from a run id, asks with
``Await`` as before.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from ._client_common import build_submit, default_address, outcome, submit_timed_out
from ._connection import (
    Answer,
    ClientConnection,
    ConnectionFailed,
    Event,
    Refused,
    Reply,
    Request,
    State,
    Welcomed,
)
from ._handshake import HANDSHAKE_TIMEOUT
from ._owed import Owed, OwedEnds
from ._tls import SSLOption, client_context, open_socket
from .errors import CodaError, ResultTimeoutError
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

__all__ = ["Client", "RunHandle"]

R = TypeVar("R")

READ_SIZE = 1 << 16


class RunHandle:
    """A submitted run: its id, and a way to wait for its result."""

    def __init__(self, client: Client, run_id: str) -> None:
        self.client = client
        self.run_id = run_id
        self.owed: Owed | None = None  # its end comes unasked, on the connection that submitted

    def result(self, timeout: float | None = None) -> Any:
        """Block until the run ends; return its value or raise its failure.
        The first call takes the end sent unasked; a later one asks again (the
        run may have expired meanwhile)."""
        return outcome(self.client._finished(self.run_id, self.owed, timeout))

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
        handshake_timeout: float = HANDSHAKE_TIMEOUT,
        ssl: SSLOption = None,
    ) -> None:
        self.address = default_address(address)
        self.token = token
        self.serializer = serializer
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self._tls = client_context(ssl)
        self._sock: socket.socket | None = None
        self._conn: ClientConnection | None = None
        self._events: deque[Event] = deque()
        self._lock = threading.RLock()
        self._owed = OwedEnds()  # ends of submitted runs, kept for their handles

    # -- public API -------------------------------------------------------

    def submit(
        self,
        target: object,
        args: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        queue: str | None = None,
        not_before: float | None = None,
        timeout: float | None = None,
    ) -> RunHandle:
        """Start a task or workflow; return with its handle once the
        supervisor has accepted it (committed it to its store).

        ``run_id`` makes the submission idempotent (a second one with the same
        id returns the first run); ``not_before`` (epoch seconds) delays it;
        ``timeout`` (seconds) bounds the wait for acceptance, which a store
        that cannot commit would otherwise hold up.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            conn = self._connected()
            request = build_submit(
                conn.next_request_id(),
                target,
                args,
                serializer=self.serializer,
                run_id=run_id,
                queue=queue,
                wait=True,  # its end is sent here, unasked: see the module docstring
                not_before=not_before,
                limit=conn.frame_limit,
            )
            try:
                reply = self._request(request, deadline)
            except ResultTimeoutError:
                assert timeout is not None
                raise submit_timed_out(timeout) from None
            assert isinstance(reply, Accepted)
            handle = RunHandle(self, reply.run_id)
            handle.owed = self._owed.expect(handle, conn, request.req_id)
            return handle

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
            conn = self._connected()
            request = build_submit(
                conn.next_request_id(),
                target,
                args,
                serializer=self.serializer,
                run_id=None,
                queue=queue,
                wait=True,
                limit=conn.frame_limit,
            )
            reply = self._request(request, deadline)
            while not isinstance(reply, Finished):
                reply = self._answer(request.req_id, deadline)
            return outcome(reply)

    def handle(self, run_id: str) -> RunHandle:
        """The handle of an earlier run, by id."""
        return RunHandle(self, run_id)

    def status(self) -> dict[str, Any]:
        reply = self._ask(lambda req_id: StatusRequest(req_id=req_id), StatusReply)
        return reply.status

    def cancel(self, run_id: str, *, terminate: bool = False) -> str:
        """Cancel a run (a workflow with everything it spawned, or a task);
        ``result()`` then raises ``coda.Cancelled``. ``terminate`` also stops
        a sync task that is running, by replacing its worker process. Returns
        ``"cancelled"``, or ``"cancelling"`` while workers stop it."""
        ask = lambda req_id: CancelRun(req_id=req_id, run_id=run_id, terminate=terminate)  # noqa: E731
        return self._ask(ask, CancelReply).state

    def runs(
        self,
        *,
        state: str | None = None,
        name: str | None = None,
        since: float | None = None,
        limit: int = 50,
    ) -> list[JobView]:
        """The most recent runs, newest first (``coda runs``)."""
        reply = self._ask(
            lambda req_id: RunsRequest(req_id, state=state, name=name, since=since, limit=limit),
            RunsReply,
        )
        return reply.runs

    def show(self, run_id: str) -> tuple[JobView, list[JobView]]:
        """A run and every job it spawned, oldest first (``coda show``)."""
        reply = self._ask(lambda req_id: ShowRequest(req_id=req_id, run_id=run_id), ShowReply)
        return reply.run, reply.steps

    def purge(self, queue: str) -> int:
        """Drop the jobs waiting in ``queue`` (they end cancelled); how many."""
        reply = self._ask(lambda req_id: PurgeQueue(req_id=req_id, queue=queue), PurgeReply)
        return reply.purged

    def close(self) -> None:
        with self._lock:
            self._drop()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------

    def _ask(self, build: Callable[[int], Request], kind: type[R]) -> R:
        """One request, one reply of ``kind``."""
        with self._lock:
            conn = self._connected()
            reply = self._request(build(conn.next_request_id()), None)
            assert isinstance(reply, kind)
            return reply

    def _finished(self, run_id: str, owed: Owed | None, timeout: float | None) -> Finished:
        """The run's end: the one its submit is owed on this connection, else
        asked for with ``Await``."""
        with self._lock:
            deadline = None if timeout is None else time.monotonic() + timeout
            conn = self._connected()
            if owed is not None and self._owed.owes(owed, conn):
                return self._owed_end(owed.req_id, deadline)
            reply = self._request(Await(req_id=conn.next_request_id(), run_id=run_id), deadline)
            assert isinstance(reply, Finished)
            return reply

    def _owed_end(self, req_id: int, deadline: float | None) -> Finished:
        """Wait for the end a submit is owed (kept already, or next to come).
        A timeout leaves it owed: a later ``result()`` still gets it."""
        kept = self._owed.take(req_id)
        if kept is None:
            kept = self._wait_for(req_id, deadline)
            self._owed.settled(req_id)
        if isinstance(kept, CodaError):
            raise kept
        return kept

    def _wait_for(self, req_id: int, deadline: float | None) -> Finished | CodaError:
        while True:
            match self._next_event(deadline, req_id, forget=False):
                case Answer(req_id=answered, message=Finished() as message) if answered == req_id:
                    return message
                case Refused(req_id=refused, error=error) if refused == req_id:
                    return error
                case event:
                    self._keep_or_fail(event)

    def _request(self, request: Request, deadline: float | None) -> Reply:
        """Send a request on the open connection; return its first answer."""
        conn = self._connected()
        conn.send(request)
        self._write(conn.data_to_send())
        return self._answer(request.req_id, deadline)

    def _answer(self, req_id: int, deadline: float | None) -> Reply:
        """The next answer to ``req_id``; a refusal or a failed connection is
        raised; the ends of submitted runs are kept for their handles, and
        answers to requests given up earlier are passed over."""
        while True:
            match self._next_event(deadline, req_id):
                case Answer(req_id=answered, message=message) if answered == req_id:
                    return message
                case Refused(req_id=refused, error=error) if refused == req_id:
                    raise error
                case event:
                    self._keep_or_fail(event)

    def _keep_or_fail(self, event: Event) -> None:
        """An event for another request: keep a submitted run's end for its
        handle; a failed connection is raised; anything else is passed over."""
        if self._owed.keep(event):
            return
        if isinstance(event, ConnectionFailed):
            self._drop()
            raise event.error

    def _next_event(self, deadline: float | None, req_id: int, forget: bool = True) -> Event:
        self._owed.forget_dropped(self._conn)
        while not self._events:
            if not self._read(deadline):
                assert self._conn is not None
                if forget:
                    self._conn.forget(req_id)
                raise ResultTimeoutError("the result did not arrive before the timeout")
        return self._events.popleft()

    def _read(self, deadline: float | None) -> bool:
        """Feed what arrives before ``deadline`` to the connection; False if
        nothing did."""
        assert self._sock is not None and self._conn is not None
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            return False
        self._sock.settimeout(remaining)
        try:
            data = self._sock.recv(READ_SIZE)
        except TimeoutError:
            return False
        except OSError as exc:
            self._events.extend(self._conn.connection_lost(str(exc)))
            return True
        self._events.extend(self._conn.receive_data(data))
        return True

    def _write(self, data: bytearray) -> None:
        assert self._sock is not None and self._conn is not None
        try:
            self._sock.sendall(data)
        except OSError as exc:
            (failed,) = self._conn.connection_lost(str(exc))
            self._drop()
            assert isinstance(failed, ConnectionFailed)
            raise failed.error from exc

    def _connected(self) -> ClientConnection:
        if self._conn is not None and self._conn.state is State.CLOSED:
            self._drop()  # it failed after the answer we last took: start afresh
        if self._conn is None:
            self._open()
        assert self._conn is not None
        return self._conn

    def _open(self) -> None:
        self._sock = open_socket(self.address, self._tls, self.connect_timeout)
        self._conn = ClientConnection(self.address, token=self.token or "")
        self._events.clear()
        self._write(self._conn.data_to_send())
        deadline = time.monotonic() + self.handshake_timeout
        while True:
            while not self._events:
                if not self._read(deadline):
                    self._events.extend(self._conn.handshake_timed_out(self.handshake_timeout))
            match self._events.popleft():
                case Welcomed():
                    return
                case ConnectionFailed(error=error):
                    self._drop()
                    raise error

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None
        self._conn = None
        self._events.clear()
        self._owed.clear()  # their handles ask again, with Await, on the next connection
