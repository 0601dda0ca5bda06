"""The client's connection state machine, with bytes alone."""

from __future__ import annotations

import struct

import pytest

from coda._connection import (
    Answer,
    ClientConnection,
    ConnectionFailed,
    Event,
    LateAnswer,
    Refused,
    State,
    Welcomed,
)
from coda.errors import (
    ConnectionLostError,
    HandshakeError,
    ProtocolError,
    RequestRefusedError,
    UnknownNameError,
)
from coda.messages import (
    PROTOCOL_VERSION,
    Accepted,
    Await,
    CancelReply,
    CancelRun,
    Error,
    Finished,
    Hello,
    Message,
    Payload,
    StatusReply,
    StatusRequest,
    Submit,
    Welcome,
)
from coda.protocol import DEFAULT_FRAME_LIMIT, FrameDecoder, decode_message, encode_message

ADDRESS = "127.0.0.1:42069"
ARGS = Payload("application/x-msgpack", "binary", memoryview(b"\x80"))
WELCOME = bytes(encode_message(Welcome(version=PROTOCOL_VERSION, supervisor_id="sup-1")))


def frames(*messages: Message) -> bytes:
    return b"".join(encode_message(m) for m in messages)


def sent(conn: ClientConnection) -> list[Message]:
    return [decode_message(f) for f in FrameDecoder().feed(bytes(conn.data_to_send()))]


def welcomed(**kwargs: str) -> ClientConnection:
    conn = ClientConnection(ADDRESS, **kwargs)
    conn.data_to_send()
    assert conn.receive_data(WELCOME) == [Welcomed("sup-1")]
    return conn


def failure(events: list[Event]) -> Exception:
    (event,) = events
    assert isinstance(event, ConnectionFailed)
    return event.error


# -- the handshake -------------------------------------------------------------


def test_the_hello_is_queued_first_and_carries_the_token() -> None:
    conn = ClientConnection(ADDRESS, token="s3cret", pid=42)
    assert sent(conn) == [Hello(version=PROTOCOL_VERSION, role="client", token="s3cret", pid=42)]
    assert conn.data_to_send() == b""
    assert conn.state is State.HANDSHAKING


def test_a_welcome_split_byte_by_byte_opens_the_connection_on_its_last_byte() -> None:
    conn = ClientConnection(ADDRESS)
    events = [conn.receive_data(WELCOME[i : i + 1]) for i in range(len(WELCOME))]
    assert events[:-1] == [[]] * (len(WELCOME) - 1)
    assert events[-1] == [Welcomed("sup-1")]
    assert conn.state is State.READY


def test_the_value_limit_is_learned_from_the_welcome_and_sizes_the_decoder() -> None:
    conn = ClientConnection(ADDRESS)
    welcome = Welcome(version=PROTOCOL_VERSION, supervisor_id="sup-1", frame_limit=100_000)
    conn.receive_data(bytes(encode_message(welcome)))
    assert conn.frame_limit == 100_000
    result = Payload("application/x-msgpack", "binary", memoryview(bytes(100_000)))
    conn.send(Await(req_id=conn.next_request_id(), run_id="r"))
    (answer,) = conn.receive_data(frames(Finished(req_id=1, run_id="r", result=result)))
    assert isinstance(answer, Answer)  # a value at the limit, relayed with its envelope
    assert welcomed().frame_limit == DEFAULT_FRAME_LIMIT  # a supervisor that did not say


def test_no_request_leaves_before_the_welcome() -> None:
    conn = ClientConnection(ADDRESS)
    with pytest.raises(ProtocolError, match="handshaking"):
        conn.send(StatusRequest(req_id=conn.next_request_id()))


def test_a_request_id_must_come_from_the_connection() -> None:
    conn = welcomed()
    with pytest.raises(ProtocolError, match="next_request_id"):
        conn.send(StatusRequest(req_id=7))


def test_no_token_given_to_a_supervisor_that_needs_one_says_how_to_give_one() -> None:
    conn = ClientConnection(ADDRESS)
    refusal = Error(code="token_required", message="this supervisor requires a token")
    error = failure(conn.receive_data(frames(refusal)))
    assert isinstance(error, HandshakeError)
    assert str(error) == (
        f"the supervisor at {ADDRESS} requires a token and none was given: pass token= to "
        "Client or AsyncClient, --token to coda commands, or set CODA_TOKEN"
    )
    assert conn.state is State.CLOSED


def test_a_wrong_token_is_called_wrong_in_the_callers_own_words() -> None:
    conn = ClientConnection(ADDRESS, token="nope", token_hint="put it in the broker URL")
    refusal = Error(code="token_invalid", message="the token offered is not valid")
    error = failure(conn.receive_data(frames(refusal)))
    assert str(error) == (
        f"the supervisor at {ADDRESS} refused the token given, which is not its --token: "
        "put it in the broker URL"
    )


def test_another_refusal_of_the_handshake_passes_on_the_supervisors_words() -> None:
    conn = ClientConnection(ADDRESS)
    refusal = Error(code="shutting_down", message="the supervisor is shutting down")
    error = failure(conn.receive_data(frames(refusal)))
    assert isinstance(error, HandshakeError)
    assert str(error) == (
        f"the supervisor at {ADDRESS} refused the connection: the supervisor is shutting down"
    )


def test_a_welcome_in_another_protocol_version_is_refused() -> None:
    conn = ClientConnection(ADDRESS)
    welcome = Welcome(version=PROTOCOL_VERSION + 1, supervisor_id="s")
    error = failure(conn.receive_data(frames(welcome)))
    assert isinstance(error, HandshakeError)
    assert f"protocol version {PROTOCOL_VERSION + 1}" in str(error)


@pytest.mark.parametrize(
    ("first_bytes", "who"),
    [
        (b"AMQP\x00\x00\x09\x01", "an AMQP broker (RabbitMQ?) is listening there"),
        (b"HTTP/1.1 400 Bad Request\r\n\r\n", "an HTTP server is listening there"),
        (b"-ERR unknown command\r\n", "a Redis server is listening there"),
        (b"E\x00\x00\x00\x8bSFATAL\x00VFATAL\x00C0A000\x00", "a PostgreSQL server is listening"),
        (b"SSH-2.0-OpenSSH_9.2\r\n", "an SSH server is listening there"),
        (b"J\x00\x00\x00\n8.0.36\x00", "a MySQL server is listening there"),
    ],
)
def test_a_foreign_server_is_named_from_its_first_bytes(first_bytes: bytes, who: str) -> None:
    conn = ClientConnection(ADDRESS)
    error = failure(conn.receive_data(first_bytes))
    assert isinstance(error, HandshakeError)
    assert str(error).startswith(f"no Coda supervisor answered at {ADDRESS}: {who}")


def test_a_tls_listener_is_told_apart_and_the_remedy_named() -> None:
    conn = ClientConnection(ADDRESS)
    error = failure(conn.receive_data(b"\x15\x03\x03\x00\x02\x02\x32"))  # a TLS alert
    assert str(error) == (
        f"the server at {ADDRESS} speaks TLS: pass ssl=True (or an SSLContext) to the client, "
        "or --tls to coda commands"
    )


def test_unknown_foreign_bytes_are_shown() -> None:
    conn = ClientConnection(ADDRESS)
    error = failure(conn.receive_data(b"\x00\x7f\xff\xffgarbage"))  # a length far too long
    assert str(error) == (
        f"no Coda supervisor answered at {ADDRESS}: the server there answered "
        "b'\\x00\\x7f\\xff\\xffgarbage', which is not Coda's protocol"
    )


def test_a_first_frame_that_is_no_message_is_foreign() -> None:
    conn = ClientConnection(ADDRESS)
    error = failure(conn.receive_data(struct.pack(">I", 2) + b"\xc1\xc1"))
    assert "which is not Coda's protocol" in str(error)


def test_silence_until_the_timeout_names_the_address_and_a_known_port() -> None:
    conn = ClientConnection("127.0.0.1:6379")
    error = failure(conn.handshake_timed_out(5.0))
    assert isinstance(error, HandshakeError)
    assert str(error) == (
        "no Coda supervisor answered at 127.0.0.1:6379 within 5s: something accepted the "
        "connection but did not answer the handshake (port 6379 is Redis's)"
    )
    assert conn.handshake_timed_out(5.0) == []  # it is over


def test_a_close_during_the_handshake_suggests_tls() -> None:
    error = failure(ClientConnection(ADDRESS).receive_data(b""))
    assert isinstance(error, ConnectionLostError)
    assert "during the handshake" in str(error) and "TLS" in str(error)


# -- requests and answers -----------------------------------------------------


def test_answers_out_of_order_glued_and_split_find_their_requests() -> None:
    conn = welcomed()
    submit = Submit(req_id=conn.next_request_id(), name="t", args=ARGS, wait=True)
    wait = Await(req_id=conn.next_request_id(), run_id="r0")
    status = StatusRequest(req_id=conn.next_request_id())
    for request in (submit, wait, status):
        conn.send(request)
    assert sent(conn) == [submit, wait, status]
    answers = [
        StatusReply(req_id=3, status={"ok": True}),
        Accepted(req_id=1, run_id="r1"),
        Finished(req_id=2, run_id="r0"),
        Finished(req_id=1, run_id="r1"),
    ]
    stream = frames(*answers)
    cut = len(stream) // 2 + 3
    events = conn.receive_data(stream[:cut]) + conn.receive_data(stream[cut:])
    assert events == [
        Answer(3, answers[0], final=True),  # type: ignore[arg-type]
        Answer(1, answers[1], final=False),  # type: ignore[arg-type]
        Answer(2, answers[2], final=True),  # type: ignore[arg-type]
        Answer(1, answers[3], final=True),  # type: ignore[arg-type]
    ]
    assert conn.in_flight == 0 and conn.state is State.READY


def test_a_refusal_ends_one_request_and_the_connection_goes_on() -> None:
    conn = welcomed()
    conn.send(Submit(req_id=conn.next_request_id(), name="no.such.task", args=ARGS))
    conn.send(Submit(req_id=conn.next_request_id(), name="t", args=ARGS))
    conn.send(StatusRequest(req_id=conn.next_request_id()))
    events = conn.receive_data(
        frames(
            Error(code="unknown_name", message="no task", req_id=1),
            Error(code="content_disallowed", message="pickle is not accepted", req_id=2),
        )
    )
    assert [type(e) for e in events] == [Refused, Refused]
    first, second = (e.error for e in events if isinstance(e, Refused))
    assert isinstance(first, UnknownNameError) and first.name == "no.such.task"
    assert isinstance(second, RequestRefusedError) and second.code == "content_disallowed"
    assert conn.state is State.READY and conn.in_flight == 1


def test_an_error_for_the_whole_connection_fails_it() -> None:
    conn = welcomed()
    conn.send(StatusRequest(req_id=conn.next_request_id()))
    error = failure(conn.receive_data(frames(Error(code="bad_frame", message="frame too big"))))
    assert isinstance(error, ConnectionLostError)
    assert str(error) == f"the supervisor at {ADDRESS} closed the connection: frame too big"
    assert conn.state is State.CLOSED and conn.in_flight == 0
    assert conn.receive_data(frames(StatusReply(req_id=1, status={}))) == []


def test_an_error_glued_to_the_welcome_comes_after_it() -> None:
    conn = ClientConnection(ADDRESS)
    events = conn.receive_data(WELCOME + frames(Error(code="shutting_down", message="bye")))
    assert events[0] == Welcomed("sup-1")
    assert isinstance(events[1], ConnectionFailed) and len(events) == 2


def test_an_answer_to_a_forgotten_request_is_late_and_harmless() -> None:
    conn = welcomed()
    conn.send(Await(req_id=conn.next_request_id(), run_id="r"))
    conn.forget(1)
    late = Finished(req_id=1, run_id="r")
    assert conn.receive_data(frames(late)) == [LateAnswer(1, late)]
    assert conn.state is State.READY


def test_an_answer_to_a_request_never_sent_breaks_the_protocol() -> None:
    conn = welcomed()
    error = failure(conn.receive_data(frames(Finished(req_id=9, run_id="r"))))
    assert isinstance(error, ProtocolError) and "request 9, never sent" in str(error)


def test_an_answer_of_the_wrong_kind_breaks_the_protocol() -> None:
    conn = welcomed()
    conn.send(Submit(req_id=conn.next_request_id(), name="t", args=ARGS))
    error = failure(conn.receive_data(frames(StatusReply(req_id=1, status={}))))
    assert "answered 'status_reply' where 'accepted' was due" in str(error)


def test_a_broken_frame_fails_the_connection() -> None:
    conn = welcomed()
    error = failure(conn.receive_data(struct.pack(">I", 2**31)))
    assert isinstance(error, ProtocolError) and "exceeds the limit" in str(error)


def test_the_supervisor_closing_fails_what_is_in_flight() -> None:
    conn = welcomed()
    conn.send(StatusRequest(req_id=conn.next_request_id()))
    error = failure(conn.receive_data(b""))
    assert str(error) == f"the supervisor at {ADDRESS} closed the connection"
    assert conn.in_flight == 0
    assert failure(welcomed().connection_lost("reset by peer")).args == (
        f"lost the supervisor at {ADDRESS}: reset by peer",
    )


def test_a_cancel_is_answered_by_its_reply_or_refused() -> None:
    conn = welcomed()
    conn.send(CancelRun(req_id=conn.next_request_id(), run_id="r1"))
    conn.send(CancelRun(req_id=conn.next_request_id(), run_id="r2"))
    reply = CancelReply(req_id=1, run_id="r1", state="cancelling")
    refusal = Error(code="already_finished", message="it has already succeeded", req_id=2)
    events = conn.receive_data(frames(reply, refusal))
    assert events[0] == Answer(1, reply, final=True)
    assert isinstance(events[1], Refused) and isinstance(events[1].error, RequestRefusedError)
    assert conn.in_flight == 0
