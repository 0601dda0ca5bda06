"""Hostile and broken peers get a clear error; everyone else is served."""

from __future__ import annotations

import socket
import struct

import msgspec
import pytest

import coda
from coda.messages import PROTOCOL_VERSION, Hello, Payload, Submit
from coda.protocol import FrameDecoder, decode_message, encode_message
from coda.testing import SupervisorProcess
from tests.apps import basic

pytestmark = pytest.mark.e2e


def raw_connect(sup: SupervisorProcess, version: int = PROTOCOL_VERSION) -> socket.socket:
    host, port = sup.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(encode_message(Hello(version=version, role="client")))
    return sock


def read_messages(sock: socket.socket, count: int = 1) -> list[object]:
    decoder = FrameDecoder()
    messages: list[object] = []
    while len(messages) < count:
        data = sock.recv(65536)
        if not data:
            break
        messages += [decode_message(f) for f in decoder.feed(data)]
    return messages


def test_bad_frames_get_errors_and_the_supervisor_keeps_serving(supervisor) -> None:  # type: ignore[no-untyped-def]
    good = supervisor.client()
    cases = {
        "oversized": struct.pack(">I", 2**31),
        "corrupt": struct.pack(">I", 3) + b"\xc1\xc1\xc1",
        "unknown_type": encode_frame(["no_such_message", 1]),
        "invalid_fields": encode_frame(["submit", "not-an-int"]),
    }
    for label, payload in cases.items():
        sock = raw_connect(supervisor)
        welcome = read_messages(sock)[0]
        assert type(welcome).__name__ == "Welcome", label
        sock.sendall(payload)
        (error,) = read_messages(sock)
        assert type(error).__name__ == "Error", label
        assert error.message, label  # type: ignore[attr-defined]
        if label == "oversized":
            assert error.code == "bad_frame", label  # type: ignore[attr-defined]
            assert sock.recv(1) == b""  # stream cannot be trusted: closed
        else:
            assert error.code == "bad_message", label  # type: ignore[attr-defined]
            # the stream is still in sync: the same connection keeps working
            args = Payload("application/json", "utf-8", b'{"x": 1, "y": 2}')
            sock.sendall(
                encode_message(Submit(req_id=9, name="tests.apps.basic.add", args=args, wait=True))
            )
            _accepted, finished = read_messages(sock, 2)
            assert finished.result.body == b"\x03"  # type: ignore[attr-defined]
        sock.close()
        assert good.run(basic.add, args={"x": 1, "y": 1}, timeout=30) == 2
    assert "unknown message type 'no_such_message'" in _error_text(
        supervisor, cases["unknown_type"]
    )


def encode_frame(value: object) -> bytes:
    body = msgspec.msgpack.encode(value)
    return struct.pack(">I", len(body)) + body


def _error_text(sup: SupervisorProcess, payload: bytes) -> str:
    sock = raw_connect(sup)
    read_messages(sock)
    sock.sendall(payload)
    (error,) = read_messages(sock)
    sock.close()
    return str(error.message)  # type: ignore[attr-defined]


def test_wrong_protocol_version_is_refused(supervisor) -> None:  # type: ignore[no-untyped-def]
    sock = raw_connect(supervisor, version=99)
    (error,) = read_messages(sock)
    assert error.code == "handshake"  # type: ignore[attr-defined]
    assert "protocol version 99" in error.message  # type: ignore[attr-defined]
    sock.close()


def test_garbage_before_handshake_is_refused(supervisor) -> None:  # type: ignore[no-untyped-def]
    host, port = supervisor.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    (error,) = read_messages(sock)
    assert error.code == "bad_frame"  # type: ignore[attr-defined]
    sock.close()


def test_pickle_payloads_are_refused_by_default(supervisor) -> None:  # type: ignore[no-untyped-def]
    sock = raw_connect(supervisor)
    read_messages(sock)
    args = Payload("application/x-python-serialize", "binary", b"\x80\x04N.")
    sock.sendall(encode_message(Submit(req_id=1, name="tests.apps.basic.add", args=args)))
    (error,) = read_messages(sock)
    assert error.code == "content_disallowed"  # type: ignore[attr-defined]
    assert "x-python-serialize" in error.message  # type: ignore[attr-defined]
    sock.close()


def test_unknown_names_from_the_client(supervisor) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(coda.UnknownNameError, match="'does.not.exist'"):
        supervisor.client().run("does.not.exist", timeout=10)
