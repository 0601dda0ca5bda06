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
bytes per frame. Afterwards the limit is on values: an argument or result
encodes to at most the supervisor's frame limit (``DEFAULT_FRAME_LIMIT``
unless configured, announced in ``Welcome`` and passed to workers), checked
where the value is made; decoders accept that plus ``ENVELOPE_ALLOWANCE``
(``decoding_limit``), the rest of the message around the value, so a value
relayed in a slightly larger message (a result in ``Finished``) still fits.

Copies. The supervisor relays payloads it never reads (task arguments and
results: ``Payload.body``), so each hop should copy them as little as
possible. The sender encodes a message straight into the buffer handed to
the socket (``encode_message_into``): one copy. The receiver keeps the bytes
of each read as they are; a frame is a view of them (see ``FrameDecoder`` for
the two cases where it is copied once), and decoding makes ``Payload.body`` a
``memoryview`` of the frame rather than a new ``bytes``. So a payload the
supervisor stores and forwards is copied once per hop by the sender, plus
once by the receiver only when its frame shares a read with other frames or
is split across reads. Code that needs ``bytes`` (a serializer that wants
them) converts at the edge, where user values are made.
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
    "ENVELOPE_ALLOWANCE",
    "HANDSHAKE_FRAME_LIMIT",
    "Frame",
    "FrameDecoder",
    "MessageCodec",
    "check_hello",
    "decode_message",
    "decoding_limit",
    "encode_message",
    "encode_message_into",
]

HEADER = struct.Struct(">I")
DEFAULT_FRAME_LIMIT = 64 * 1024 * 1024
HANDSHAKE_FRAME_LIMIT = 64 * 1024
ENVELOPE_ALLOWANCE = 64 * 1024

M = TypeVar("M", bound=WireMessage, covariant=True)

Frame = bytes | memoryview
"""One frame's body, as ``FrameDecoder`` hands it out."""

_NO_LENGTH = bytes(HEADER.size)
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

    def decode(self, frame: Frame) -> M:
        """Decode one frame body, or explain why it is not a message."""
        try:
            return self._decoder.decode(frame)
        except msgspec.ValidationError as exc:
            raise FrameDecodeError(self._explain_invalid(frame, exc)) from None
        except msgspec.DecodeError as exc:
            raise FrameDecodeError(f"frame is not valid MessagePack: {exc}") from None
        except UnicodeDecodeError as exc:  # msgspec lets this one through (found by fuzzing)
            raise FrameDecodeError(f"frame holds a string that is not valid UTF-8: {exc}") from None

    def _explain_invalid(self, frame: Frame, exc: msgspec.ValidationError) -> str:
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


def encode_message(message: WireMessage) -> bytearray:
    """One frame: length prefix and body, built in a single buffer."""
    frame = bytearray()
    encode_message_into(message, frame)
    return frame


def encode_message_into(message: WireMessage, buffer: bytearray) -> None:
    """Append one frame to ``buffer``: the payloads inside are copied once,
    into the buffer that goes to the socket. On failure ``buffer`` is left
    as it was."""
    start = len(buffer)
    buffer += _NO_LENGTH
    try:
        _encoder.encode_into(message, buffer, start + HEADER.size)
    except BaseException:
        del buffer[start:]
        raise
    HEADER.pack_into(buffer, start, len(buffer) - start - HEADER.size)


def decoding_limit(frame_limit: int) -> int:
    """The largest frame a connection accepts once values may be
    ``frame_limit`` bytes: the value and the message around it."""
    return frame_limit + ENVELOPE_ALLOWANCE


def decode_message(frame: Frame) -> Message:
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
    """Reassembles frames from a byte stream split anywhere.

    ``feed`` takes the bytes of one read and keeps references to them rather
    than copies (they are ``bytes``, so nothing can change them later). A
    frame comes out as a view of the read it arrived in when it fills at
    least half of that read; a smaller one is copied out, so that a value
    decoded from it and kept for long (a stored result) never holds more
    than twice its size of memory; a frame split over several reads is
    joined once. A payload decoded from the frame (``Payload.body``, a
    ``memoryview``) is a view of it in turn.
    """

    def __init__(self, limit: int = DEFAULT_FRAME_LIMIT) -> None:
        self.limit = limit
        self._pieces: list[memoryview] = []  # an unfinished frame, length prefix included
        self._pieces_size = 0
        self._frame_size: int | None = None  # prefix and body, once the prefix is known

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames."""
        return self._pieces_size

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete, in order.

        Raises ``FrameTooLargeError`` as soon as a length prefix above the
        limit is seen; the connection cannot be resynchronised after that.
        """
        if type(data) is not bytes:
            data = bytes(data)  # a caller's buffer may change after we return: own a copy
        frames: list[Frame] = []
        view = memoryview(data)
        position = self._finish_split_frame(view, frames) if self._pieces else 0
        end = len(data)
        while end - position >= HEADER.size:
            (length,) = HEADER.unpack_from(data, position)
            start = position + HEADER.size
            if length > self.limit or end - start < length:
                break
            frame = view[start : start + length]
            frames.append(frame if 2 * (length + HEADER.size) >= end else bytes(frame))
            position = start + length
        if position < end:
            self._keep(view[position:])
            self._refuse_above_limit()
        return frames

    def _finish_split_frame(self, view: memoryview, frames: list[Frame]) -> int:
        """Add the start of ``view`` to the unfinished frame; return how much
        of ``view`` it took."""
        taken = 0
        if self._frame_size is None:  # the length prefix itself was split
            taken = min(HEADER.size - self._pieces_size, len(view))
            self._keep(view[:taken])
            if self._frame_size is None:
                return taken
        missing = self._frame_size - self._pieces_size
        if len(view) - taken < missing or self._frame_size > HEADER.size + self.limit:
            self._keep(view[taken:])
            self._refuse_above_limit()
            return len(view)
        self._pieces.append(view[taken : taken + missing])
        whole = b"".join(self._pieces)
        self._pieces, self._pieces_size, self._frame_size = [], 0, None
        frames.append(memoryview(whole)[HEADER.size :])
        return taken + missing

    def _keep(self, piece: memoryview) -> None:
        """Hold the start of a frame until the rest arrives."""
        if not piece:
            return
        self._pieces.append(piece)
        self._pieces_size += len(piece)
        if self._frame_size is None and self._pieces_size >= HEADER.size:
            head = b"".join(bytes(p[: HEADER.size]) for p in self._pieces)
            self._frame_size = HEADER.size + HEADER.unpack_from(head)[0]

    def _refuse_above_limit(self) -> None:
        """Refuse a frame as soon as its length prefix is known, before its
        body arrives."""
        if self._frame_size is not None and self._frame_size > HEADER.size + self.limit:
            raise FrameTooLargeError(
                f"frame of {self._frame_size - HEADER.size} bytes exceeds "
                f"the limit of {self.limit} bytes"
            )
