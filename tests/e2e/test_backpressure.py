"""A client that floods requests and never reads the replies is held back by
backpressure: its sends block, the supervisor's memory stays flat, and other
clients keep being served."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from coda.messages import Payload, StatusRequest, Submit
from coda.protocol import encode_message
from coda.testing import SupervisorProcess, wait_until
from tests.apps import basic
from tests.e2e.rawpeer import connect, rss_bytes

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def flood_batch(count: int = 2000) -> bytes:
    """Submits of an unknown name (each answered by an error) and status
    requests (each ~40x larger in reply than in request)."""
    args = Payload("application/json", "utf-8", b"{}")
    frames = []
    for req_id in range(count):
        if req_id % 2:
            frames.append(encode_message(StatusRequest(req_id=req_id)))
        else:
            frames.append(encode_message(Submit(req_id=req_id, name="no.such.task", args=args)))
    return b"".join(frames)


class Flooder(threading.Thread):
    """Sends batches as fast as the socket takes them and never reads."""

    def __init__(self, sock: socket.socket) -> None:
        super().__init__(daemon=True)
        self.sock = sock
        self.sent = 0
        self.last_progress = time.monotonic()
        self.stop = threading.Event()

    def run(self) -> None:
        batch = memoryview(flood_batch())
        self.sock.settimeout(0.1)
        offset = 0
        while not self.stop.is_set():
            try:
                n = self.sock.send(batch[offset:])
            except TimeoutError:
                continue
            except OSError:
                return
            self.sent += n
            self.last_progress = time.monotonic()
            offset = (offset + n) % len(batch)

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_progress


def test_flooding_client_that_never_reads_is_held_back() -> None:
    with SupervisorProcess(["tests.apps.basic"], workers=1) as sup:
        good = sup.client()
        assert good.run(basic.add, args={"x": 1, "y": 1}, timeout=30) == 2
        baseline = rss_bytes(sup.pid)
        flooders = [Flooder(connect(sup.address)) for _ in range(3)]
        for flooder in flooders:
            flooder.start()
        slowest = 0.0
        for i in range(30):  # served while the flood is going on
            started = time.monotonic()
            assert good.run(basic.add, args={"x": i, "y": 1}, timeout=30) == i + 1
            slowest = max(slowest, time.monotonic() - started)
        # backpressure: the flooders' sends block once the kernel buffers fill
        wait_until(
            lambda: all(f.stalled_for() > 1.0 for f in flooders), timeout=60, what="flood stall"
        )
        sent = sum(f.sent for f in flooders)
        grown = rss_bytes(sup.pid) - baseline
        assert good.run(basic.add, args={"x": 2, "y": 2}, timeout=30) == 4
        assert good.status()["workers"]
        for flooder in flooders:
            flooder.stop.set()
            flooder.join(5)
            flooder.sock.close()
        print(
            f"flooders sent {sent / MiB:.1f} MiB of requests before blocking; supervisor RSS "
            f"grew {grown / MiB:.1f} MiB; slowest round trip {slowest * 1000:.0f} ms"
        )
        # (the round trips' time is printed, not asserted: each one finished
        # within its 30 s timeout while the flood went on, which is the claim)
        # Without backpressure each byte sent asks for ~20 bytes of replies;
        # with it the supervisor holds at most ~HIGH_WATER per connection.
        assert grown < 48 * MiB, f"supervisor RSS grew {grown / MiB:.0f} MiB"
        assert good.run(basic.add, args={"x": 3, "y": 3}, timeout=30) == 6
