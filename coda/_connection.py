"""The client's end of a connection to the supervisor, free of I/O.

Theory of operation (h11's idea): ``ClientConnection`` holds everything a
client connection knows (the handshake, the requests in flight, what each
still expects) and does no I/O. Requests go in through ``send`` and come out
as bytes from ``data_to_send``; received bytes go in through ``receive_data``
and come out as events. The blocking ``Client`` drives it with a socket,
``AsyncClient`` with an asyncio protocol, and tests with bytes alone::

    conn = ClientConnection("127.0.0.1:42069", token="...")
    sock.sendall(conn.data_to_send())              # the Hello
    conn.receive_data(sock.recv(65536))            # [Welcomed(...)]
    conn.send(StatusRequest(req_id=conn.next_request_id()))
    sock.sendall(conn.data_to_send())
    conn.receive_data(sock.recv(65536))            # [Answer(1, StatusReply(...), final=True)]

States: ``HANDSHAKING`` (the Hello is queued; the supervisor's first bytes
are judged by ``Handshake``) → ``READY`` (requests may be sent) → ``CLOSED``
(after ``ConnectionFailed``; nothing more happens). Events:

============== ===========================================================
Welcomed       the handshake is done
Answer         an answer a request expects (``final``: no other follows)
Refused        an ``Error`` answering one request; that request is over
LateAnswer     an answer to a request the caller gave up on (``forget``)
ConnectionFailed  the connection is unusable; every request in flight failed
============== ===========================================================

What each request expects, in order: a ``Submit`` an ``Accepted`` (and, with
``wait``, then a ``Finished``), every other request its one reply
(``_ANSWERED_BY``: an ``Await`` a ``Finished``, a ``CancelRun`` a
``CancelReply``, a ``StatusRequest`` a ``StatusReply``...); any of them may
get an ``Error`` instead. An answer out of that order, or to a
request never sent, breaks the protocol and fails the connection.

``Handshake`` is the first step on its own, so that a connection with its
own framing after the welcome (the kombu transport's) can reuse it. It
recognises a peer that is not a Coda supervisor from its first bytes (an
AMQP broker, a Redis, HTTP or PostgreSQL server, a TLS listener) and names
it, and words a refused token as what to do about it.
"""

from __future__ import annotations

import enum

import msgspec

from ._handshake import Handshake
from .errors import (
    CodaError,
    ConnectionLostError,
    ProtocolError,
    RequestRefusedError,
    UnknownNameError,
    ValueTooLargeError,
)
from .messages import (
    Accepted,
    Await,
    CancelReply,
    CancelRun,
    Error,
    Finished,
    Message,
    PurgeQueue,
    PurgeReply,
    RunsReply,
    RunsRequest,
    ShowReply,
    ShowRequest,
    StatusReply,
    StatusRequest,
    Submit,
)
from .protocol import (
    DEFAULT_FRAME_LIMIT,
    FrameDecoder,
    decode_message,
    decoding_limit,
    encode_message_into,
)

__all__ = [
    "Answer",
    "ClientConnection",
    "ConnectionFailed",
    "Event",
    "LateAnswer",
    "Refused",
    "Reply",
    "Request",
    "State",
    "Welcomed",
]

Request = Submit | Await | CancelRun | RunsRequest | ShowRequest | PurgeQueue | StatusRequest
Reply = Accepted | Finished | CancelReply | RunsReply | ShowReply | PurgeReply | StatusReply
_REPLIES = (Accepted, Finished, CancelReply, RunsReply, ShowReply, PurgeReply, StatusReply)
_ANSWERED_BY: dict[type[Request], type[Reply]] = {
    Await: Finished,
    CancelRun: CancelReply,
    RunsRequest: RunsReply,
    ShowRequest: ShowReply,
    PurgeQueue: PurgeReply,
    StatusRequest: StatusReply,
}


class State(enum.Enum):
    HANDSHAKING = "handshaking"
    READY = "ready"
    CLOSED = "closed"


class Welcomed(msgspec.Struct, frozen=True):
    """The supervisor accepted the handshake: requests may be sent."""

    supervisor_id: str


class Answer(msgspec.Struct, frozen=True):
    """An answer a request in flight expects; ``final`` when none will follow."""

    req_id: int
    message: Reply
    final: bool


class Refused(msgspec.Struct, frozen=True):
    """The supervisor refused a request; ``error`` is what to raise for it."""

    req_id: int
    error: CodaError


class LateAnswer(msgspec.Struct, frozen=True):
    """An answer to a request the caller gave up on: nobody waits for it."""

    req_id: int
    message: Message


class ConnectionFailed(msgspec.Struct, frozen=True):
    """The connection cannot be used any more; ``error`` says why. Every
    request in flight failed with it."""

    error: CodaError


Event = Welcomed | Answer | Refused | LateAnswer | ConnectionFailed


class _InFlight:
    """A request in flight: the answers it still expects, in order."""

    __slots__ = ("expects", "name")

    def __init__(self, name: str | None, expects: tuple[type[Reply], ...]) -> None:
        self.name = name  # the target of a submit, for an unknown-name refusal
        self.expects = expects


class ClientConnection:
    """One client connection's protocol state; see the module docstring."""

    def __init__(
        self, address: str, *, token: str = "", pid: int = 0, token_hint: str | None = None
    ) -> None:
        self.address = address
        self.state = State.HANDSHAKING
        self._handshake = Handshake(address, token=token, pid=pid, token_hint=token_hint)
        self._outgoing = bytearray(self._handshake.hello)
        self.frame_limit = DEFAULT_FRAME_LIMIT
        """The largest argument the supervisor takes, in bytes encoded (it says
        in its welcome)."""
        self._decoder = FrameDecoder()
        self._in_flight: dict[int, _InFlight] = {}
        self._last_req_id = 0

    @property
    def in_flight(self) -> int:
        """Requests sent whose last answer has not come."""
        return len(self._in_flight)

    # -- sending ----------------------------------------------------------

    def next_request_id(self) -> int:
        self._last_req_id += 1
        return self._last_req_id

    def send(self, request: Request) -> None:
        """Queue a request; its id must come from ``next_request_id``."""
        if self.state is not State.READY:
            raise ProtocolError(f"cannot send a request on a connection that is {self.state.value}")
        req_id = request.req_id
        if not 0 < req_id <= self._last_req_id or req_id in self._in_flight:
            raise ProtocolError(f"request id {req_id} was not given by next_request_id")
        encode_message_into(request, self._outgoing)
        self._in_flight[req_id] = _expectation(request)

    def data_to_send(self) -> bytearray:
        """The bytes queued since the last call (the Hello, then requests)."""
        data, self._outgoing = self._outgoing, bytearray()
        return data

    def forget(self, req_id: int) -> None:
        """The caller stopped waiting: later answers arrive as ``LateAnswer``."""
        self._in_flight.pop(req_id, None)

    # -- receiving --------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Bytes from the supervisor; ``b""`` when it closed the connection."""
        if self.state is State.CLOSED:
            return []
        if not data:
            return self.connection_lost(None)
        if self.state is State.HANDSHAKING:
            outcome = self._handshake.receive_data(data)
            if outcome is None:
                return []
            if isinstance(outcome, CodaError):
                return self._failed(outcome)
            self.state = State.READY
            self.frame_limit = outcome.frame_limit or DEFAULT_FRAME_LIMIT
            self._decoder = FrameDecoder(decoding_limit(self.frame_limit))
            trailing = self._handshake.trailing
            return [Welcomed(outcome.supervisor_id), *self._frames(trailing)]
        return self._frames(data)

    def connection_lost(self, why: str | None) -> list[Event]:
        """The socket closed (``why`` is None) or failed."""
        if self.state is State.CLOSED:
            return []
        if self.state is State.HANDSHAKING:
            return self._failed(self._handshake.closed(why))
        if why is None:
            return self._failed(
                ConnectionLostError(f"the supervisor at {self.address} closed the connection")
            )
        return self._failed(ConnectionLostError(f"lost the supervisor at {self.address}: {why}"))

    def handshake_timed_out(self, seconds: float) -> list[Event]:
        """No welcome came within ``seconds``: say who, if anyone, answered."""
        if self.state is not State.HANDSHAKING:
            return []
        return self._failed(self._handshake.timed_out(seconds))

    def _frames(self, data: bytes) -> list[Event]:
        events: list[Event] = []
        try:
            frames = self._decoder.feed(data) if data else []
            for frame in frames:
                events.append(self._event(decode_message(frame)))
                if self.state is State.CLOSED:
                    break
        except ProtocolError as exc:
            events += self._failed(
                ProtocolError(f"the supervisor at {self.address} broke the protocol: {exc}")
            )
        return events

    def _event(self, message: Message) -> Event:
        if isinstance(message, _REPLIES):
            return self._answer(message.req_id, message)
        if isinstance(message, Error):
            if message.req_id is not None:
                return self._answer(message.req_id, message)
            return self._failed_one(
                ConnectionLostError(
                    f"the supervisor at {self.address} closed the connection: {message.message}"
                )
            )
        tag = type(message).__struct_config__.tag
        return self._failed_one(ProtocolError(f"a client does not expect {tag!r} messages"))

    def _answer(self, req_id: int, message: Error | Reply) -> Event:
        in_flight = self._in_flight.get(req_id)
        if in_flight is None:
            if 0 < req_id <= self._last_req_id:
                return LateAnswer(req_id, message)
            return self._failed_one(ProtocolError(f"an answer to request {req_id}, never sent"))
        if isinstance(message, Error):
            del self._in_flight[req_id]
            return Refused(req_id, _refusal(message, in_flight.name))
        expects = in_flight.expects
        if not isinstance(message, expects[0]):
            got, wanted = (t.__struct_config__.tag for t in (type(message), expects[0]))
            return self._failed_one(
                ProtocolError(f"request {req_id} was answered {got!r} where {wanted!r} was due")
            )
        if len(expects) > 1:
            in_flight.expects = expects[1:]
            return Answer(req_id, message, final=False)
        del self._in_flight[req_id]
        return Answer(req_id, message, final=True)

    def _failed(self, error: CodaError) -> list[Event]:
        return [self._failed_one(error)]

    def _failed_one(self, error: CodaError) -> ConnectionFailed:
        self.state = State.CLOSED
        self._in_flight.clear()
        self._outgoing = bytearray()
        return ConnectionFailed(error)


def _expectation(request: Request) -> _InFlight:
    match request:
        case Submit(wait=True):
            return _InFlight(request.name, (Accepted, Finished))
        case Submit():
            return _InFlight(request.name, (Accepted,))
    return _InFlight(None, (_ANSWERED_BY[type(request)],))


def _refusal(message: Error, name: str | None) -> CodaError:
    if message.code == "unknown_name" and name is not None:
        return UnknownNameError(name)
    if message.code == "too_large":  # arguments an older client did not check
        return ValueTooLargeError(message.message)
    return RequestRefusedError(message.code, message.message)
