"""Random and mutated frames thrown at a live supervisor over many connections.

Afterwards a normal client must still be served, the supervisor's memory
must not have ballooned, every byte it sent back must be a valid frame, and
its log must hold no traceback (an exception escaping a protocol callback is
logged by asyncio as "Fatal error ..." with a traceback).
"""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import pytest

from coda.messages import (
    PROTOCOL_VERSION,
    Await,
    Hello,
    Message,
    Payload,
    Spawn,
    StatusRequest,
    Submit,
    TaskDone,
    WorkflowDone,
)
from coda.protocol import FrameDecoder, decode_message, encode_message
from coda.testing import SupervisorProcess
from tests.apps import basic
from tests.e2e.rawpeer import connect, rss_bytes

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
SEED = 20240605
JSON_ARGS = Payload("application/json", "utf-8", b'{"x": 1, "y": 2}')
SAMPLES: list[Message] = [
    Hello(version=PROTOCOL_VERSION, role="client"),
    Hello(version=PROTOCOL_VERSION, role="worker", task_slots=4),
    Submit(req_id=1, name="tests.apps.basic.add", args=JSON_ARGS, wait=True),
    Submit(req_id=2, name="tests.apps.basic.add", args=JSON_ARGS, run_id="fuzz-run"),
    Submit(req_id=3, name="no.such.task", args=JSON_ARGS),
    Submit(req_id=4, name="tests.apps.basic.add", args=Payload("x/y", "binary", b"\xc1")),
    Await(req_id=5, run_id="fuzz-run"),
    StatusRequest(req_id=6),
    Spawn(req_id=7, run_id="fuzz-run", kind="task", name="tests.apps.basic.add", args=JSON_ARGS),
    TaskDone(job_id="fuzz-run", result=JSON_ARGS),
    WorkflowDone(run_id="fuzz-run", attempt=1),
]
LOG_ALARMS = ("Traceback", "Fatal error", "Exception in callback", "never retrieved")


def mutate(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        at = rng.randrange(len(out)) if out else 0
        op = rng.choice(["flip", "set", "insert", "delete", "truncate"])
        if op == "flip" and out:
            out[at] ^= 1 << rng.randrange(8)
        elif op == "set" and out:
            out[at] = rng.choice([0x00, 0xFF, 0xC1, 0x7F, 0xDC, 0xCF, rng.randrange(256)])
        elif op == "insert":
            out[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == "delete" and out:
            del out[at : at + rng.randint(1, 8)]
        elif op == "truncate":
            del out[at:]
    return bytes(out)


def hostile_stream(rng: random.Random) -> bytes:
    parts = []
    if rng.random() < 0.85:
        parts.append(encode_message(SAMPLES[0]))
    for _ in range(rng.randint(1, 10)):
        frame = encode_message(rng.choice(SAMPLES))
        roll = rng.random()
        if roll < 0.5:
            frame = mutate(rng, frame)
        elif roll < 0.6:
            frame = rng.randbytes(rng.randint(1, 200))
        elif roll < 0.65:
            frame = struct.pack(">I", rng.randint(64 * MiB + 1, 2**32 - 1)) + rng.randbytes(16)
        parts.append(frame)
    return b"".join(parts)


def read_until_closed(sock: socket.socket) -> bytes:
    received = bytearray()
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except (TimeoutError, ConnectionResetError):
        pass
    return bytes(received)


def throw(address: str, rng: random.Random) -> int:
    """One hostile connection; returns how many replies it got."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        try:
            sock.sendall(hostile_stream(rng))
        except (BrokenPipeError, ConnectionResetError):
            return 0  # closed on us mid-send (an oversized prefix): fine
        ending = rng.random()
        if ending < 0.2:  # vanish with a reset
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return 0
        if ending < 0.3:  # just close
            return 0
        sock.shutdown(socket.SHUT_WR)
        replies = read_until_closed(sock)
    decoder = FrameDecoder()
    messages = [decode_message(frame) for frame in decoder.feed(replies)]
    return len(messages)


def test_live_supervisor_survives_a_fuzzing_crowd(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    connections = 2000 if request.config.getoption("--run-slow") else 200
    rng = random.Random(SEED)
    log_path = tmp_path / "supervisor.log"
    with (
        log_path.open("wb") as log,
        SupervisorProcess(["tests.apps.basic"], workers=1, stderr=log) as sup,
    ):
        good = sup.client()
        assert good.run(basic.add, args={"x": 1, "y": 1}, timeout=30) == 2
        baseline = rss_bytes(sup.pid)
        # idle peers holding half a handshake open while the crowd goes on
        loiterers = [connect(sup.address, hello=False) for _ in range(50)]
        for i, sock in enumerate(loiterers):
            sock.sendall(encode_message(SAMPLES[0])[: 1 + i % 8])
        replies = 0
        for i in range(connections):
            replies += throw(sup.address, rng)
            if i % 50 == 0:
                assert good.run(basic.add, args={"x": i, "y": 1}, timeout=30) == i + 1
        for sock in loiterers:
            sock.close()
        assert good.run(basic.add, args={"x": 2, "y": 2}, timeout=30) == 4
        assert good.status()["workers"]
        grown = rss_bytes(sup.pid) - baseline
        print(
            f"{connections} hostile connections, {replies} replies; RSS grew {grown / MiB:.1f} MiB"
        )
        assert replies > connections // 2  # it answered, it did not just hang up
        assert grown < 32 * MiB
    text = log_path.read_text(errors="replace")
    alarms = [line for line in text.splitlines() if any(a in line for a in LOG_ALARMS)]
    assert not alarms, "\n".join(alarms[:20])
