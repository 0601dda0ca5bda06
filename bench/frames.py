"""``python -m bench.frames``: the cost of one supervisor hop for a payload.

What the supervisor does with a task's result: bytes arrive from a worker,
are cut into frames, decoded into ``TaskDone``, and the same payload leaves
inside ``Finished`` for the client. Measured two ways, each for 5 KB and
50 KB payloads:

- ``functions``: ``FrameDecoder.feed`` → ``decode_message`` →
  ``encode_message``, the pure path;
- ``protocol``: a ``FramedProtocol`` on a fake transport, fed the same
  bytes, relaying each ``TaskDone`` as a ``Finished`` (its batched writes
  included; ``writelines`` joins as Python 3.11's asyncio does).

The bytes arrive as a real socket would hand them over: one frame per read,
and 64 KiB reads that split and glue frames. Prints CPU microseconds per message
(this process's CPU time, best of several repeats, so that other work on a
shared machine moves the figures less than wall-clock time would; still,
compare A/B runs alternated, not one run against a remembered figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from coda._wire import FramedProtocol
from coda.messages import Finished, Message, Payload, TaskDone
from coda.protocol import FrameDecoder, decode_message, encode_message

SIZES = {"5 KB": 5 * 1024, "50 KB": 50 * 1024}
READ_SIZE = 64 * 1024


def _stream(size: int, count: int) -> bytes:
    body = os.urandom(size)
    frames = []
    for i in range(count):
        result = Payload("application/x-msgpack", "binary", memoryview(body))
        frames.append(bytes(encode_message(TaskDone(job_id=f"job-{i}", result=result))))
    return b"".join(frames)


def _one_frame_per_read(stream: bytes) -> list[bytes]:
    reads, position = [], 0
    while position < len(stream):
        length = int.from_bytes(stream[position : position + 4], "big") + 4
        reads.append(stream[position : position + length])
        position += length
    return reads


def _fixed_reads(stream: bytes) -> list[bytes]:
    return [stream[i : i + READ_SIZE] for i in range(0, len(stream), READ_SIZE)]


def _reply(message: Message) -> Finished:
    assert isinstance(message, TaskDone)
    return Finished(req_id=1, run_id=message.job_id, result=message.result)


def _functions(reads: list[bytes]) -> int:
    decoder = FrameDecoder()
    sent = 0
    for data in reads:
        for frame in decoder.feed(data):
            sent += len(encode_message(_reply(decode_message(frame))))
    return sent


class _Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.sent = 0

    def write(self, data: Any) -> None:
        self.sent += len(data)

    def writelines(self, list_of_data: Any) -> None:
        self.write(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Relay(FramedProtocol):
    def message_received(self, message: Message) -> None:
        self.send(_reply(message))


def _protocol(reads: list[bytes]) -> int:
    async def run() -> int:
        relay = _Relay()
        transport = _Transport()
        relay.connection_made(transport)
        for data in reads:
            relay.data_received(data)
            await asyncio.sleep(0)
        return transport.sent

    return asyncio.run(run())


def _best(run: Callable[[], object], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best


def _cases(count: int) -> Iterator[tuple[str, str, list[bytes]]]:
    for label, size in SIZES.items():
        stream = _stream(size, count)
        yield label, "one frame per read", _one_frame_per_read(stream)
        yield label, "64 KiB reads", _fixed_reads(stream)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="messages per repeat")
    parser.add_argument("--repeats", type=int, default=7)
    options = parser.parse_args()
    print(f"{'payload':<7} {'reads':<20} {'functions CPU µs/msg':>21} {'protocol CPU µs/msg':>20}")
    for label, reads_label, reads in _cases(options.count):
        pure = _best(partial(_functions, reads), options.repeats) / options.count
        framed = _best(partial(_protocol, reads), options.repeats) / options.count
        print(f"{label:<7} {reads_label:<20} {pure * 1e6:>21.2f} {framed * 1e6:>20.2f}")


if __name__ == "__main__":
    main()
