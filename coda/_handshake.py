"""A client's handshake with the supervisor, and what to say when it fails.

The client speaks first (``Hello``); a supervisor answers with one frame,
``Welcome`` or ``Error``. Anything else means something other than a Coda
supervisor listens at the address, and a person should hear that at once,
not a timeout ten seconds later or "a frame of 1095586128 bytes" (RabbitMQ's
``AMQP`` header read as a length). A Coda frame before the welcome is at
most ``HANDSHAKE_FRAME_LIMIT`` bytes, so its first byte is zero: any other
first byte is foreign, and the common ones are named (AMQP, HTTP, Redis,
PostgreSQL, MySQL, SSH, TLS). Servers that wait for a command of their own
(Redis does) stay silent: the caller's handshake timeout ends the wait, and
well-known ports get a hint.

A refusal names its remedy: a supervisor started with ``--token`` answers
``token_required`` when none was offered and ``token_invalid`` for a wrong
one, and the client tells the person how to give one (``token_hint``: the
client's own words for it).
"""

from __future__ import annotations

from .errors import CodaError, ConnectionLostError, FrameDecodeError, HandshakeError
from .messages import PROTOCOL_VERSION, Error, Hello, Welcome
from .protocol import HANDSHAKE_FRAME_LIMIT, HEADER, decode_message, encode_message

__all__ = ["HANDSHAKE_TIMEOUT", "TOKEN_HINT", "Handshake"]

HANDSHAKE_TIMEOUT = 5.0
"""Seconds a client waits for the welcome: a supervisor answers at once."""

TOKEN_HINT = "pass token= to Client or AsyncClient, --token to coda commands, or set CODA_TOKEN"

_SILENT_SERVERS = {6379: "Redis", 11211: "memcached", 9092: "Kafka", 27017: "MongoDB"}


class Handshake:
    """The ``Hello`` to send, then the supervisor's first bytes judged."""

    def __init__(
        self, address: str, *, token: str = "", pid: int = 0, token_hint: str | None = None
    ) -> None:
        self.address = address
        self.token_given = bool(token)
        self.token_hint = token_hint or TOKEN_HINT
        hello = Hello(version=PROTOCOL_VERSION, role="client", token=token, pid=pid)
        self.hello = bytes(encode_message(hello))
        self.trailing = b""
        """What came after the welcome, in the same read."""
        self._received = b""

    def receive_data(self, data: bytes) -> Welcome | CodaError | None:
        """The welcome, the error to raise, or None while more bytes are due."""
        received = self._received = self._received + data
        if not received:
            return None
        if received[:1] != b"\x00":
            return self._foreign()
        if len(received) < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(received)
        if length > HANDSHAKE_FRAME_LIMIT:
            return self._foreign()
        end = HEADER.size + length
        if len(received) < end:
            return None
        try:
            message = decode_message(received[HEADER.size : end])
        except FrameDecodeError:
            return self._foreign()
        self.trailing = received[end:]
        match message:
            case Welcome(version=version) if version == PROTOCOL_VERSION:
                return message
            case Welcome(version=version):
                return HandshakeError(
                    f"the supervisor at {self.address} speaks protocol version {version} "
                    f"and this client {PROTOCOL_VERSION}: run the same Coda version on both"
                )
            case Error():
                return self._refused(message)
        tag = type(message).__struct_config__.tag
        return HandshakeError(
            f"no Coda supervisor answered at {self.address}: its first message was {tag!r}"
        )

    def closed(self, why: str | None) -> CodaError:
        """The connection ended before the welcome."""
        if self._received:
            return self._foreign()
        # Most often TLS: TLS 1.3 refuses a missing client certificate after
        # the client thinks the TLS handshake is done. A supervisor out of
        # descriptors resets what it cannot accept (libuv does), saying nothing.
        return ConnectionLostError(
            f"the supervisor at {self.address} closed the connection during the handshake"
            f"{f' ({why})' if why else ''}: does it serve TLS (ssl=, --tls-ca) or require "
            "a client certificate? Or is it out of file descriptors (its log would say)?"
        )

    def timed_out(self, seconds: float) -> CodaError:
        if self._received:
            return self._foreign()
        port = self.address.rpartition(":")[2]
        known = _SILENT_SERVERS.get(int(port)) if port.isdigit() else None
        hint = f" (port {port} is {known}'s)" if known else ""
        return HandshakeError(
            f"no Coda supervisor answered at {self.address} within {seconds:g}s: something "
            f"accepted the connection but did not answer the handshake{hint}"
        )

    def _foreign(self) -> HandshakeError:
        first = self._received[:64]
        who = _who_speaks(first)
        if who == "TLS":
            return HandshakeError(
                f"the server at {self.address} speaks TLS: pass ssl=True (or an SSLContext) "
                "to the client, or --tls to coda commands"
            )
        if who is not None:
            return HandshakeError(
                f"no Coda supervisor answered at {self.address}: {who} is listening there"
            )
        return HandshakeError(
            f"no Coda supervisor answered at {self.address}: the server there answered "
            f"{first[:16]!r}, which is not Coda's protocol"
        )

    def _refused(self, error: Error) -> HandshakeError:
        if error.code == "token_required":
            return HandshakeError(
                f"the supervisor at {self.address} requires a token and none was given: "
                f"{self.token_hint}"
            )
        if error.code == "token_invalid":
            return HandshakeError(
                f"the supervisor at {self.address} refused the token given, which is not "
                f"its --token: {self.token_hint}"
            )
        return HandshakeError(
            f"the supervisor at {self.address} refused the connection: {error.message}"
        )


def _who_speaks(first: bytes) -> str | None:
    """The protocol a server's first bytes belong to, when they are a common one."""
    if first.startswith(b"AMQP"):
        return "an AMQP broker (RabbitMQ?)"
    if first.startswith(b"HTTP/"):
        return "an HTTP server"
    if first.startswith(b"SSH-"):
        return "an SSH server"
    if first[:1] in (b"\x15", b"\x16") and first[1:2] == b"\x03":  # a TLS alert or handshake
        return "TLS"
    if first[:1] == b"E" and b"SFATAL" in first:
        return "a PostgreSQL server"
    if first[:1] in (b"-", b"+", b"$", b"*", b":") and b"\r\n" in first:
        return "a Redis server"
    if len(first) > 4 and first[3] == 0 and first[4] == 10:  # a greeting, protocol 10
        return "a MySQL server"
    return None
