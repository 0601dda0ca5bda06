"""A raw-socket peer for hostile-input tests: it speaks the framing by hand
so it can send what no well-behaved client would (floods, garbage, frames it
never reads the answers to), plus a way to read a process's memory."""

from __future__ import annotations

import socket
from pathlib import Path

from coda.messages import PROTOCOL_VERSION, Hello, Message
from coda.protocol import FrameDecoder, decode_message, encode_message


def connect(address: str, *, hello: bool = True, token: str = "") -> socket.socket:
    """A TCP connection to ``host:port``; after the handshake when ``hello``."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    if hello:
        sock.sendall(encode_message(Hello(version=PROTOCOL_VERSION, role="client", token=token)))
        (welcome,) = read_messages(sock)
        assert type(welcome).__name__ == "Welcome", welcome
    return sock


def read_messages(sock: socket.socket, count: int = 1) -> list[Message]:
    """Read until ``count`` messages have arrived or the peer closes."""
    decoder = FrameDecoder()
    messages: list[Message] = []
    while len(messages) < count:
        data = sock.recv(65536)
        if not data:
            break
        messages += [decode_message(frame) for frame in decoder.feed(data)]
    return messages


def rss_bytes(pid: int) -> int:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")
