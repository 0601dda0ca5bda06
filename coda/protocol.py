"""Framing and message decoding, free of I/O.

Theory of operation: a connection is a byte stream cut into frames, each a
4-byte big-endian length followed by that many bytes of MessagePack holding
one message (see ``coda.messages``). ``FrameDecoder`` takes bytes as they
arrive, in any split, and returns whole frames; it refuses a length above its
limit *before* buffering the body, so a hostile prefix cannot make us
allocate. ``decode_message`` turns one frame into a typed message or raises
``FrameDecodeError`` with a sentence a person can act on. ``encode_message``
is the inverse. Sockets live elsewhere (``coda._wire``), so all of this is
tested with bytes alone.

Which messages a connection accepts is a ``MessageCodec``: ``CORE_CODEC``
knows the core protocol (``coda.messages.Message``); a connection that also
serves an extension's messages (the supervisor's client connections) decodes
with ``CORE_CODEC.extended(types)``, and a client of an extension builds one
from the messages it receives. A tag outside a codec is refused by name,
with the tags that codec knows.

Limits: before the handshake a peer may send at most ``HANDSHAKE_FRAME_LIMIT``
bytes per frame; afterwards ``DEFAULT_FRAME_LIMIT`` unless configured.
"""

from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Iterable
from typing import Generic, TypeVar, get_args

import msgspec

from .errors import ConfigurationError, FrameDecodeError, FrameTooLargeError, HandshakeError
from .messages import PROTOCOL_VERSION, Hello, Message, WireMessage

__all__ = [
    "CORE_CODEC",
    "DEFAULT_FRAME_LIMIT",
    "HANDSHAKE_FRAME_LIMIT",
    "FrameDecoder",
    "MessageCodec",
    "check_hello",
    "decode_message",
    "encode_message",
]

HEADER = struct.Struct(">I")
DEFAULT_FRAME_LIMIT = 64 * 1024 * 1024
HANDSHAKE_FRAME_LIMIT = 64 * 1024

M = TypeVar("M", bound=WireMessage, covariant=True)

_encoder = msgspec.msgpack.Encoder()
_generic_decoder = msgspec.msgpack.Decoder()


class MessageCodec(Generic[M]):
    """Decodes frame bodies into one of a fixed set of message types.

    msgspec decodes a union of tagged, array-like structs in one pass (the tag
    picks the type), so a codec is built once, from the types, when a
    connection's set of messages is known; a type's tag may appear only once.
    """

    def __init__(self, types: Iterable[type[M]]) -> None:
        self.types: tuple[type[M], ...] = tuple(types)
        self.tags: frozenset[str] = _tags_of(self.types)
        union = functools.reduce(operator.or_, self.types)
        self._decoder: msgspec.msgpack.Decoder[M] = msgspec.msgpack.Decoder(union)

    def extended(self, types: Iterable[type[WireMessage]]) -> MessageCodec[WireMessage]:
        """A codec for these messages and this codec's own."""
        return MessageCodec((*self.types, *types))

    def decode(self, frame: bytes | memoryview) -> M:
        """Decode one frame body, or explain why it is not a message."""
        try:
            return self._decoder.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameDecodeError(self._explain_invalid(frame, exc)) from None
        except msgspec.DecodeError as exc:
            raise FrameDecodeError(f"frame is not valid MessagePack: {exc}") from None
        except UnicodeDecodeError as exc:  # msgspec lets this one through (found by fuzzing)
            raise FrameDecodeError(f"frame holds a string that is not valid UTF-8: {exc}") from None

    def _explain_invalid(self, frame: bytes | memoryview, exc: msgspec.ValidationError) -> str:
        try:
            raw = _generic_decoder.decode(frame)
        except (msgspec.DecodeError, UnicodeDecodeError):
            return f"invalid message: {exc}"
        if not isinstance(raw, list) or not raw or not isinstance(raw[0], str):
            return "invalid message: expected an array whose first element is the message type"
        if raw[0] not in self.tags:
            return f"unknown message type {raw[0]!r}; known: {', '.join(sorted(self.tags))}"
        return f"invalid {raw[0]!r} message: {exc}"


def _tags_of(types: tuple[type[WireMessage], ...]) -> frozenset[str]:
    """The tags of these message types, each declared once."""
    owners: dict[str, type[WireMessage]] = {}
    for cls in types:
        tag = cls.__struct_config__.tag if issubclass(cls, WireMessage) else None
        if not isinstance(tag, str):
            raise ConfigurationError(
                f"{cls.__qualname__} is not a tagged message: subclass "
                "coda.messages.WireMessage and give it a tag"
            )
        if tag in owners and owners[tag] is not cls:
            raise ConfigurationError(
                f"message tag {tag!r} is declared by both {owners[tag].__qualname__} and "
                f"{cls.__qualname__}: give one of them another tag"
            )
        owners[tag] = cls
    if not owners:
        raise ConfigurationError("a codec needs at least one message type")
    return frozenset(owners)


CORE_CODEC: MessageCodec[Message] = MessageCodec(get_args(Message))


def encode_message(message: WireMessage) -> bytes:
    """One frame: length prefix and body, built in a single buffer."""
    buffer = bytearray(HEADER.size)
    _encoder.encode_into(message, buffer, HEADER.size)
    HEADER.pack_into(buffer, 0, len(buffer) - HEADER.size)
    return bytes(buffer)


def decode_message(frame: bytes | memoryview) -> Message:
    """Decode one frame body of the core protocol (see ``MessageCodec.decode``)."""
    return CORE_CODEC.decode(frame)


def check_hello(message: WireMessage, expected_role: str | None = None) -> Hello:
    """Validate the first message of a connection."""
    if not isinstance(message, Hello):
        raise HandshakeError(f"the first message must be 'hello', got {type(message).__name__}")
    if message.version != PROTOCOL_VERSION:
        raise HandshakeError(
            f"protocol version {message.version} is not supported "
            f"(this supervisor speaks version {PROTOCOL_VERSION})"
        )
    if expected_role is not None and message.role != expected_role:
        raise HandshakeError(f"expected role {expected_role!r}, got {message.role!r}")
    return message


class FrameDecoder:
    """Reassembles frames from a byte stream split anywhere."""

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        self.limit = limit
        self._buffer = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        """Add bytes; return every frame now complete, in order.

        Raises ``FrameTooLargeError`` as soon as a length prefix above the
        limit is seen; the connection cannot be resynchronised after that.
        """
        buffer = self._buffer
        buffer += data
        frames: list[bytes] = []
        position = 0
        end = len(buffer)
        while end - position >= HEADER.size:
            (length,) = HEADER.unpack_from(buffer, position)
            if length > self.limit:
                raise FrameTooLargeError(
                    f"frame of {length} bytes exceeds the limit of {self.limit} bytes"
                )
            start = position + HEADER.size
            if end - start < length:
                break
            frames.append(bytes(buffer[start : start + length]))
            position = start + length
        if position:
            del buffer[:position]
        return frames
