"""Framing and message decoding, with bytes alone."""

from __future__ import annotations

import contextlib
import copy
import pickle
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
    StatusReply,
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
    encode_message_into,
)

ARGS = Payload("application/x-msgpack", "binary", memoryview(b"\x80"))
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


# -- copies on the frame path ------------------------------------------------

BIG = Payload("application/x-msgpack", "binary", memoryview(bytes(range(256)) * 40))


def test_a_frame_filling_its_read_comes_out_as_a_view_of_it() -> None:
    read = bytes(encode_message(Submit(req_id=1, name="t", args=BIG)))
    (frame,) = FrameDecoder().feed(read)
    assert isinstance(frame, memoryview) and frame.obj is read


def test_a_payload_is_decoded_as_a_view_of_its_frame() -> None:
    read = bytes(encode_message(Submit(req_id=1, name="t", args=BIG)))
    (frame,) = FrameDecoder().feed(read)
    message = decode_message(frame)
    assert isinstance(message, Submit) and message.args == BIG
    assert isinstance(message.args.body, memoryview) and message.args.body.obj is read


def test_small_frames_sharing_a_read_are_copied_out_of_it() -> None:
    """A value kept from one of them must not hold on to the whole read."""
    small = [Submit(req_id=i, name="t", args=ARGS) for i in range(3)]
    read = b"".join(encode_message(m) for m in [*small, Submit(req_id=9, name="t", args=BIG)])
    frames = FrameDecoder().feed(read)
    assert [decode_message(f) for f in frames][:3] == small
    assert [type(f) for f in frames] == [bytes, bytes, bytes, memoryview]
    assert isinstance(frames[3], memoryview) and frames[3].obj is read  # the bulk of the read


def test_a_frame_split_over_reads_is_joined_once_into_its_own_buffer() -> None:
    whole = bytes(encode_message(Submit(req_id=1, name="t", args=BIG)))
    decoder = FrameDecoder()
    assert decoder.feed(whole[:2]) == [] and decoder.feed(whole[2:3000]) == []
    (frame,) = decoder.feed(whole[3000:])
    assert isinstance(frame, memoryview) and frame.obj == whole and len(frame.obj) == len(whole)
    assert decoder.buffered == 0


def test_a_caller_may_reuse_the_buffer_it_fed() -> None:
    buffer = bytearray(encode_message(SAMPLES[1]))
    (frame,) = FrameDecoder().feed(buffer)  # type: ignore[arg-type]
    buffer[:] = bytes(len(buffer))
    assert decode_message(frame) == SAMPLES[1]


def test_encoding_appends_frames_to_one_buffer() -> None:
    buffer = bytearray()
    for message in SAMPLES:
        encode_message_into(message, buffer)
    assert buffer == b"".join(encode_message(m) for m in SAMPLES)


def test_a_message_that_cannot_be_encoded_leaves_the_buffer_as_it_was() -> None:
    buffer = bytearray(encode_message(SAMPLES[0]))
    before = bytes(buffer)
    with pytest.raises(TypeError):
        encode_message_into(StatusReply(req_id=1, status={"x": object()}), buffer)
    assert buffer == before


def test_a_payload_pickles_as_its_bytes() -> None:
    assert pickle.loads(pickle.dumps(BIG)) == BIG
    assert copy.deepcopy(BIG) == BIG
