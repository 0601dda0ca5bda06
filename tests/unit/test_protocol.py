"""Framing and message decoding, with bytes alone."""

from __future__ import annotations

import contextlib
import struct

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.errors import ConfigurationError, FrameDecodeError, FrameTooLargeError, HandshakeError
from coda.messages import (
    MESSAGE_TAGS,
    PROTOCOL_VERSION,
    Failure,
    Finished,
    Hello,
    Payload,
    Spawn,
    Submit,
    TaskDone,
    WireMessage,
)
from coda.protocol import (
    CORE_CODEC,
    FrameDecoder,
    MessageCodec,
    check_hello,
    decode_message,
    encode_message,
)

ARGS = Payload("application/x-msgpack", "binary", b"\x80")
SAMPLES = [
    Hello(version=PROTOCOL_VERSION, role="worker", pid=3, queues=["a", "b"], task_slots=2),
    Submit(req_id=1, name="pkg.task", args=ARGS, wait=True),
    Spawn(req_id=2, run_id="r", kind="task", name="t", args=ARGS, cache_key=b"\x91\x01"),
    TaskDone(job_id="j", failure=Failure("ValueError", "bad", "tb", retry_in=0.5)),
    Finished(req_id=3, run_id="r", kind="workflow", result=ARGS),
]


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: object) -> None:
    frame = encode_message(message)  # type: ignore[arg-type]
    (body,) = FrameDecoder().feed(frame)
    assert decode_message(body) == message


def test_split_anywhere_and_glued() -> None:
    stream = b"".join(encode_message(m) for m in SAMPLES)
    for cut in range(len(stream) + 1):
        decoder = FrameDecoder()
        frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
        assert [decode_message(f) for f in frames] == SAMPLES
        assert decoder.buffered == 0


def test_byte_by_byte() -> None:
    decoder = FrameDecoder()
    frames = [f for byte in encode_message(SAMPLES[1]) for f in decoder.feed(bytes([byte]))]
    assert [decode_message(f) for f in frames] == [SAMPLES[1]]


def test_truncated_frame_waits_for_the_rest() -> None:
    frame = encode_message(SAMPLES[1])
    decoder = FrameDecoder()
    assert decoder.feed(frame[:-1]) == []
    assert decoder.buffered == len(frame) - 1


def test_oversized_prefix_refused_before_the_body_arrives() -> None:
    decoder = FrameDecoder(limit=1024)
    with pytest.raises(FrameTooLargeError, match="1025 bytes exceeds the limit of 1024"):
        decoder.feed(struct.pack(">I", 1025))
    assert decoder.buffered == 4  # nothing of the announced body was allocated


def test_frame_at_the_limit_is_accepted() -> None:
    decoder = FrameDecoder(limit=10)
    assert decoder.feed(struct.pack(">I", 10) + b"x" * 10) == [b"x" * 10]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xc1", "not valid MessagePack"),
        (msgspec.msgpack.encode(["nope", 1]), "unknown message type 'nope'"),
        (msgspec.msgpack.encode({"t": "submit"}), "expected an array"),
        (msgspec.msgpack.encode(["submit", "x", "y"]), "invalid 'submit' message"),
        (msgspec.msgpack.encode(["hello", 1, "emperor"]), "invalid 'hello' message"),
        (b"", "not valid MessagePack"),
    ],
)
def test_invalid_messages_are_explained(body: bytes, expected: str) -> None:
    with pytest.raises(FrameDecodeError, match=expected):
        decode_message(body)


class Ping(WireMessage, tag="ping", frozen=True):
    """An extension's message, for the codec tests."""

    seq: int


class FakeSubmit(WireMessage, tag="submit", frozen=True):
    name: str


def test_the_core_codec_refuses_a_message_it_does_not_know_and_lists_what_it_knows() -> None:
    body = msgspec.msgpack.encode(Ping(seq=1))
    with pytest.raises(FrameDecodeError) as refused:
        decode_message(body)
    assert str(refused.value) == (
        f"unknown message type 'ping'; known: {', '.join(sorted(MESSAGE_TAGS))}"
    )


def test_an_extended_codec_decodes_its_messages_and_the_cores() -> None:
    codec = CORE_CODEC.extended([Ping])
    assert codec.tags == MESSAGE_TAGS | {"ping"}
    assert codec.decode(encode_message(Ping(seq=7))[4:]) == Ping(seq=7)
    assert codec.decode(encode_message(SAMPLES[1])[4:]) == SAMPLES[1]
    with pytest.raises(FrameDecodeError, match=r"unknown message type 'pong'; known: .*ping"):
        codec.decode(msgspec.msgpack.encode(["pong"]))
    with pytest.raises(FrameDecodeError, match="invalid 'ping' message"):
        codec.decode(msgspec.msgpack.encode(["ping", "seven"]))


def test_a_codec_refuses_a_tag_declared_twice() -> None:
    with pytest.raises(ConfigurationError, match="tag 'submit' is declared by both"):
        CORE_CODEC.extended([FakeSubmit])


def test_a_codec_refuses_a_type_that_is_not_a_tagged_message() -> None:
    with pytest.raises(ConfigurationError, match="Payload is not a tagged message"):
        MessageCodec([Hello, Payload])  # type: ignore[list-item]


def test_handshake_checks() -> None:
    assert check_hello(Hello(version=PROTOCOL_VERSION, role="client"), "client").role == "client"
    with pytest.raises(HandshakeError, match="version 7"):
        check_hello(Hello(version=7, role="client"))
    with pytest.raises(HandshakeError, match="expected role 'worker'"):
        check_hello(Hello(version=PROTOCOL_VERSION, role="client"), "worker")
    with pytest.raises(HandshakeError, match="first message must be 'hello'"):
        check_hello(SAMPLES[1])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20), st.integers(min_value=1, max_value=50))
def test_fuzz_decoder_never_raises_unexpected_errors(chunks: list[bytes], limit: int) -> None:
    """Arbitrary bytes give frames or a ProtocolError, never anything else."""
    decoder = FrameDecoder(limit=limit)
    for chunk in chunks:
        try:
            frames = decoder.feed(chunk)
        except FrameTooLargeError:
            return
        for frame in frames:
            assert len(frame) <= limit
            with contextlib.suppress(FrameDecodeError):
                decode_message(frame)
