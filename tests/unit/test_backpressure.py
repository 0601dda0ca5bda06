"""Per-connection backpressure in ``FramedProtocol``, with a fake transport."""

from __future__ import annotations

import asyncio

from coda._wire import HIGH_WATER, FramedProtocol
from coda.messages import Message, StatusReply, StatusRequest
from coda.protocol import FrameDecoder, decode_message, encode_message
from coda.supervisor import Supervisor, SupervisorConfig
from coda.supervisor.server import SupervisorConnection
from tests.unit.fake_transport import FakeTransport

REPLY_PADDING = "x" * 1000


class Answering(FramedProtocol):
    """Answers every status request with a ~1 KB reply."""

    def message_received(self, message: Message) -> None:
        assert isinstance(message, StatusRequest)
        self.send(StatusReply(req_id=message.req_id, status={"pad": REPLY_PADDING}))


def answered(transport: FakeTransport) -> list[int]:
    """The request ids answered so far, in the order the answers were written."""
    ids = []
    for frame in FrameDecoder().feed(bytes(transport.written)):
        reply = decode_message(frame)
        assert isinstance(reply, StatusReply)
        ids.append(reply.req_id)
    return ids


async def turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_peer_that_does_not_read_stops_being_read() -> None:
    async def scenario() -> None:
        conn = Answering(read_backpressure=True)
        transport = FakeTransport(conn, hold_writes=True)
        conn.connection_made(transport)
        requests = 5000  # ~5 MB of replies asked for by ~50 KB of requests
        conn.data_received(
            b"".join(encode_message(StatusRequest(req_id=i)) for i in range(requests))
        )
        await turns()
        first = len(answered(transport))
        assert 0 < first < requests
        assert conn.reading_paused and not transport.reading
        assert transport.held <= HIGH_WATER + 2048  # one reply past the mark, no more
        while transport.held:  # the peer reads, a buffer at a time
            transport.drain()
            await turns()
        assert answered(transport) == list(range(requests))  # all, in order
        assert not conn.reading_paused and transport.reading

    asyncio.run(scenario())


def test_without_backpressure_everything_is_answered_at_once() -> None:
    async def scenario() -> None:
        conn = Answering()
        transport = FakeTransport(conn, hold_writes=True)
        conn.connection_made(transport)
        conn.data_received(b"".join(encode_message(StatusRequest(req_id=i)) for i in range(500)))
        await turns()
        assert len(answered(transport)) == 500 and transport.reading

    asyncio.run(scenario())


def test_draining_by_the_kernel_alone_resumes_reading() -> None:
    """Output that left the outbox straight into the socket never triggers
    ``resume_writing``: the flush itself must resume the held frames."""

    async def scenario() -> None:
        conn = Answering(read_backpressure=True)
        transport = FakeTransport(conn)  # writes leave at once
        conn.connection_made(transport)
        requests = 2000
        conn.data_received(
            b"".join(encode_message(StatusRequest(req_id=i)) for i in range(requests))
        )
        await turns(20)
        assert answered(transport) == list(range(requests))
        assert transport.reading

    asyncio.run(scenario())


def test_supervisor_applies_backpressure_to_clients_only() -> None:
    config = SupervisorConfig(workers=0, listen="127.0.0.1:0", store="memory://")
    supervisor = Supervisor(config)
    assert SupervisorConnection(supervisor)._read_backpressure
    assert not SupervisorConnection(supervisor, worker_id=1)._read_backpressure


class Recording(FakeTransport):
    def __init__(self, protocol: asyncio.Protocol) -> None:
        super().__init__(protocol)
        self.writes: list[tuple[object, bytes]] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append((data, bytes(data)))
        super().write(data)


def test_a_turns_replies_go_out_in_one_write_of_a_buffer_never_touched_again() -> None:
    async def scenario() -> None:
        conn = Answering()
        transport = Recording(conn)
        conn.connection_made(transport)
        conn.data_received(b"".join(encode_message(StatusRequest(req_id=i)) for i in range(3)))
        await turns()
        conn.data_received(bytes(encode_message(StatusRequest(req_id=3))))
        await turns()
        assert len(transport.writes) == 2
        assert answered(transport) == [0, 1, 2, 3]
        for buffer, as_written in transport.writes:
            assert buffer == as_written  # not reused for the next turn's replies

    asyncio.run(scenario())
