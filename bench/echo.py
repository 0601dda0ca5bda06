"""The latency floor: a raw MessagePack request/response over a Unix socket.

Two Python processes, blocking sockets, 4-byte length prefixes and msgspec
MessagePack, nothing else: the least a request from a workflow to the
supervisor and back can cost on this machine. The request is shaped like
Coda's ``Spawn`` and the answer like its ``Finished``, and the server decodes
the one and encodes the other, as the supervisor must.

``python -m bench.echo PATH`` serves one connection on PATH.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

__all__ = ["EchoServer", "round_trips"]

HEADER = struct.Struct(">I")
READY = "echo ready"

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


class _Reader:
    """Frames off a blocking socket, one ``recv`` per frame when it fits."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def frame(self) -> object:
        while True:
            if len(self.buffer) >= HEADER.size:
                (length,) = HEADER.unpack_from(self.buffer)
                end = HEADER.size + length
                if len(self.buffer) >= end:
                    body, self.buffer = self.buffer[HEADER.size : end], self.buffer[end:]
                    return _decoder.decode(body)
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("peer closed")
            self.buffer += chunk


def _send(sock: socket.socket, message: object) -> None:
    body = _encoder.encode(message)
    sock.sendall(HEADER.pack(len(body)) + body)


def serve(path: str) -> None:
    """Answer each spawn-shaped request with a finished-shaped reply."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    print(READY, flush=True)
    conn, _ = listener.accept()
    reader = _Reader(conn)
    with conn, contextlib.suppress(ConnectionError):
        while True:
            request = reader.frame()
            assert isinstance(request, list)
            _, req_id, run_id, kind, _name, args, *_ = request
            _send(conn, ["finished", req_id, run_id, kind, args, None])


def round_trips(path: str, samples: int) -> list[float]:
    """Seconds per request/response, ``samples`` times, after a warm-up."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    run_id = os.urandom(16).hex()
    payload = ["application/x-msgpack", "binary", b"\x80"]
    latencies: list[float] = []
    reader = _Reader(sock)
    with sock:
        for req_id in range(samples + 100):
            started = time.perf_counter()
            _send(sock, ["spawn", req_id, run_id, "task", "bench.apps.noop", payload, None])
            reader.frame()
            if req_id >= 100:
                latencies.append(time.perf_counter() - started)
    return latencies


class EchoServer:
    """``with EchoServer() as server: round_trips(server.path, 1000)``."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="coda-bench-echo-")
        self.path = str(Path(self._dir.name) / "echo.sock")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.echo", self.path],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if READY not in line:
            self.close()
            raise RuntimeError(f"echo server did not start: {line!r}")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._dir.cleanup()

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


if __name__ == "__main__":
    serve(sys.argv[1])
