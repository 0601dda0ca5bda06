"""``Client`` and ``AsyncClient`` over a real socket to a scripted supervisor:
the shells move bytes; what the answers mean comes from the connection.

The script answers a wait only after the client gave up on it, glued to the
answer of the next request, so each shell must pass over the late answer.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import pytest

import coda
from coda.errors import ResultTimeoutError
from coda.messages import (
    PROTOCOL_VERSION,
    Await,
    Finished,
    Hello,
    Message,
    StatusReply,
    StatusRequest,
    Submit,
    Welcome,
)
from coda.protocol import FrameDecoder, decode_message, encode_message
from tests.apps import basic


class ScriptedSupervisor:
    """Welcomes one client, then answers each status request together with a
    late ``Finished`` for every wait it received before."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.received: list[Message] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        peer, _ = self.listener.accept()
        decoder, waits = FrameDecoder(), []
        with peer:
            while data := peer.recv(65536):
                for frame in decoder.feed(data):
                    message = decode_message(frame)
                    self.received.append(message)
                    match message:
                        case Hello():
                            peer.sendall(encode_message(Welcome(PROTOCOL_VERSION, "scripted")))
                        case Await(req_id=req_id, run_id=run_id):
                            waits.append(Finished(req_id=req_id, run_id=run_id))
                        case StatusRequest(req_id=req_id):
                            late, waits = waits, []
                            reply = StatusReply(req_id=req_id, status={"late": len(late)})
                            peer.sendall(b"".join(encode_message(m) for m in [*late, reply]))

    def close(self) -> None:
        self.listener.close()
        self._thread.join(5)


@pytest.fixture
def scripted() -> Iterator[ScriptedSupervisor]:
    supervisor = ScriptedSupervisor()
    yield supervisor
    supervisor.close()


def test_the_blocking_client_passes_over_an_answer_it_gave_up_on(
    scripted: ScriptedSupervisor,
) -> None:
    with coda.Client(scripted.address) as client:
        with pytest.raises(ResultTimeoutError):
            client.handle("r1").result(timeout=0.2)
        assert client.status() == {"late": 1}
        assert client.status() == {"late": 0}
    assert [type(m) for m in scripted.received] == [Hello, Await, StatusRequest, StatusRequest]


def test_the_async_client_passes_over_an_answer_it_gave_up_on(
    scripted: ScriptedSupervisor,
) -> None:
    async def scenario() -> None:
        async with coda.AsyncClient(scripted.address) as client:
            with pytest.raises(ResultTimeoutError):
                await client.handle("r1").result(timeout=0.2)
            assert await client.status() == {"late": 1}
            assert await asyncio.gather(client.status(), client.status()) == [
                {"late": 0},
                {"late": 0},
            ]

    asyncio.run(scenario())
    assert [type(m) for m in scripted.received] == [Hello, Await, *[StatusRequest] * 3]


SUBMIT_TIMEOUT = "the supervisor did not accept the submit within 0.2s"


def test_a_blocking_submit_the_supervisor_never_accepts_times_out_with_the_reason(
    scripted: ScriptedSupervisor,
) -> None:
    """Issue 11.6: a store that cannot commit held a submit forever."""
    with coda.Client(scripted.address) as client:
        with pytest.raises(ResultTimeoutError, match=SUBMIT_TIMEOUT):
            client.submit(basic.add, {"x": 1, "y": 2}, timeout=0.2)
        assert client.status() == {"late": 0}  # the connection still serves
    assert [type(m) for m in scripted.received] == [Hello, Submit, StatusRequest]


def test_an_async_submit_the_supervisor_never_accepts_times_out_with_the_reason(
    scripted: ScriptedSupervisor,
) -> None:
    async def scenario() -> None:
        async with coda.AsyncClient(scripted.address) as client:
            with pytest.raises(ResultTimeoutError, match=SUBMIT_TIMEOUT):
                await client.submit(basic.add, {"x": 1, "y": 2}, timeout=0.2)
            assert await client.status() == {"late": 0}

    asyncio.run(scenario())
    assert [type(m) for m in scripted.received] == [Hello, Submit, StatusRequest]
