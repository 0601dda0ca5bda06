"""Connections to the supervisor: handshake, then messages to the engine.

One ``SupervisorConnection`` per peer. Until the handshake completes a peer
may only send a small ``Hello`` frame; afterwards each message is matched to
one small handler. A client's message of a type an extension declared (the
``coda://`` broker's, say) goes to that extension; a client connection
decodes those types too, a worker's only the core protocol's. A message that
is valid but not allowed for the peer's role gets an ``Error`` and the
connection stays up; a broken frame gets an ``Error`` and the connection is
closed (the stream cannot be resynchronised). Either way only that peer is
affected.

Before the handshake a client connection is held on a short leash (the
``ConnectionGate``, gate.py): it counts against the connection limit, must
say ``Hello`` within the handshake timeout, and may hold only a share of
the bytes buffered for unauthenticated peers. A wrong token slows its
address down (throttle.py). Refusals of this kind are logged quietly
(quiet.py): a crowd of peers can cause thousands a second.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from typing import TYPE_CHECKING

from .._wire import FramedProtocol
from ..errors import HandshakeError
from ..messages import (
    PROTOCOL_VERSION,
    Await,
    CancelRun,
    Error,
    PurgeQueue,
    RunsRequest,
    ShowRequest,
    Spawn,
    Started,
    StatusReply,
    StatusRequest,
    Submit,
    TaskDone,
    Welcome,
    WireMessage,
    WorkflowDone,
)
from ..protocol import CORE_CODEC, HANDSHAKE_FRAME_LIMIT, check_hello, decoding_limit
from .peers import WorkerHandle
from .quiet import Quieter

if TYPE_CHECKING:
    from .supervisor import Supervisor

__all__ = ["SupervisorConnection"]

log = logging.getLogger("coda.server")


class SupervisorConnection(FramedProtocol):
    """The supervisor's end of one client or worker connection."""

    def __init__(self, supervisor: Supervisor, worker_id: int | None = None) -> None:
        # Clients may stop reading; workers are ours and must never stall.
        super().__init__(
            frame_limit=HANDSHAKE_FRAME_LIMIT,
            read_backpressure=worker_id is None,
            codec=CORE_CODEC if worker_id is not None else supervisor.extensions.codec,
        )
        self.supervisor = supervisor
        self.extensions = supervisor.extensions
        self.engine = supervisor.engine
        self.gate = supervisor.gate
        self.expected_worker_id = worker_id
        self.role: str | None = None
        self.worker: WorkerHandle | None = None
        self.address = ""  # the peer's host (TCP) or "" (Unix socket, socket pair)
        self._admitted = False  # counted by the gate until it closes
        self._deadline: asyncio.TimerHandle | None = None  # for its Hello

    # -- before the handshake ---------------------------------------------

    def on_connected(self) -> None:
        if self.expected_worker_id is not None:
            return  # our own worker, on its socket pair
        assert self.transport is not None
        peer = self.transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if not self.gate.admit():
            self._refuse_connection()
            return
        self._admitted = True
        timeout = self.supervisor.config.handshake_timeout
        self._deadline = asyncio.get_running_loop().call_later(timeout, self._no_hello, timeout)

    def _refuse_connection(self) -> None:
        limit, configured = self.gate.max_connections, self.supervisor.config.max_connections
        why = "" if limit == configured else ", lowered to fit the process's descriptor limit"
        self.fail(
            HandshakeError(
                f"it already holds {limit} client connections, its limit (--max-connections"
                f"{why}): try again later"
            ),
            code="too_many_connections",
        )

    def _no_hello(self, timeout: float) -> None:
        self._deadline = None
        if self.role is None:
            self.gate.timed_out += 1
            self.fail(
                HandshakeError(f"no hello within {timeout:g}s of connecting (--handshake-timeout)"),
                code="handshake_timeout",
            )

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        unauthenticated = self._admitted and self.role is None and self.is_open
        if unauthenticated and not self.gate.hold(self, self.decoder.buffered):
            self.fail(
                HandshakeError(
                    "too many bytes are held for connections that have not said hello: "
                    "send the hello in one piece"
                ),
                code="handshake",
            )

    def log_failure(self, exc: Exception, code: str) -> None:
        """Quietly: a crowd of peers may cause thousands of these a second."""
        held = self.supervisor.quieter.let_through(code)
        if held is not None:
            log.warning("closing connection: %s%s", exc, Quieter.suffix(held))

    def message_received(self, message: WireMessage) -> None:
        if self.role is None:
            self._handshake(message)
        elif self.worker is not None:
            self._from_worker(self.worker, message)
        else:
            self._from_client(message)

    def _from_client(self, message: WireMessage) -> None:
        match message:
            case Submit():
                self.engine.submit(self, message)
            case Await():
                self.engine.await_run(self, message)
            case CancelRun():
                self.engine.cancel(self, message)
            case RunsRequest():
                self.engine.queries.runs(self, message)
            case ShowRequest():
                self.engine.queries.show(self, message)
            case PurgeQueue():
                self.engine.queries.purge(self, message)
            case StatusRequest(req_id=req_id):
                self.send(StatusReply(req_id=req_id, status=self.supervisor.status()))
            case _:
                self._to_extension_or_refuse(message)

    def _from_worker(self, worker: WorkerHandle, message: WireMessage) -> None:
        match message:
            case Spawn():
                self.engine.spawn(worker, message)
            case Started():
                self.engine.started(worker, message)
            case TaskDone():
                self.engine.task_done(worker, message)
            case WorkflowDone():
                self.engine.workflow_done(worker, message)
            case _:
                self._to_extension_or_refuse(message)

    def _to_extension_or_refuse(self, message: WireMessage) -> None:
        """To the extension that declared the type (clients only), else refused."""
        extension = self.extensions.handler_for(message) if self.worker is None else None
        if extension is not None:
            extension.handle(self, message)
            return
        tag = type(message).__struct_config__.tag
        self.send(
            Error(
                code="unexpected_message",
                message=f"a {self.role} may not send {tag!r} messages",
                req_id=getattr(message, "req_id", None),
            )
        )

    def _handshake(self, message: WireMessage) -> None:
        expected_role = "worker" if self.expected_worker_id is not None else "client"
        try:
            hello = check_hello(message, expected_role)
        except HandshakeError as exc:
            self.fail(exc, code="handshake")
            return
        refused_token = self._token_refusal(hello.token)
        if refused_token is not None:
            self.fail(HandshakeError(refused_token[1]), code=refused_token[0])
            return
        if expected_role == "client" and self.engine.draining:
            self.fail(HandshakeError("the supervisor is shutting down"), code="shutting_down")
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self.gate.hold(self, 0)
        self.role = hello.role
        frame_limit = self.supervisor.config.frame_limit
        self.decoder.limit = decoding_limit(frame_limit)
        self.send(
            Welcome(
                version=PROTOCOL_VERSION, supervisor_id=self.supervisor.id, frame_limit=frame_limit
            )
        )
        if self.expected_worker_id is not None:
            self.worker = WorkerHandle(
                id=self.expected_worker_id,
                peer=self,
                pid=hello.pid,
                queues=tuple(hello.queues),
                task_slots=max(0, hello.task_slots),
                workflow_slots=max(0, hello.workflow_slots),
                prefetch=self.supervisor.config.task_prefetch,
            )
            self.engine.worker_joined(self.worker)

    def _token_refusal(self, offered: str) -> tuple[str, str] | None:
        """The error code and sentence refusing the token offered, if refused:
        ``token_required`` when none was, ``token_invalid`` when it is wrong
        (the client turns either into its own advice)."""
        expected = self.supervisor.config.token
        if self.expected_worker_id is not None or not expected:
            return None  # workers are our own children, on a private socket pair
        if not offered:
            return "token_required", "this supervisor requires a token and none was offered"
        throttle = self.supervisor.throttle
        locked_for = throttle.locked_for(self.address)
        if locked_for > 0:  # not compared: a guess now tells nothing
            throttle.refused_unchecked += 1
            return "token_throttled", (
                f"too many wrong tokens from {self.address or 'this address'}: tokens are "
                f"refused unchecked for {locked_for:.1f}s more"
            )
        if not hmac.compare_digest(offered.encode(), expected.encode()):
            throttle.failed(self.address)
            return "token_invalid", "the token offered is not this supervisor's --token"
        throttle.succeeded(self.address)
        return None

    def on_closed(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if self._admitted:
            self._admitted = False
            self.gate.hold(self, 0)
            self.gate.left()
        if self.role == "client":
            self.extensions.disconnected(self)
        if self.worker is not None:
            log.info("worker %s (pid %s) disconnected", self.worker.id, self.worker.pid)
            self.engine.worker_left(self.worker.id)
            self.worker = None
