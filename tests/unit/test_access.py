"""Access control: who may listen where, and how the token is compared."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import pytest

from coda.errors import ConfigurationError
from coda.messages import PROTOCOL_VERSION, Error, Hello, Welcome
from coda.protocol import FrameDecoder, decode_message, encode_message
from coda.supervisor import Supervisor, SupervisorConfig
from coda.supervisor.server import SupervisorConnection
from tests.unit.fake_transport import FakeTransport


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:0", "[::]:0", "192.0.2.10:42069", "example.com:42069", ":42069x"]
)
def test_non_loopback_listen_needs_a_token(listen: str) -> None:
    with pytest.raises(ConfigurationError):
        SupervisorConfig(workers=0, listen=listen).check()


@pytest.mark.parametrize("listen", ["127.0.0.1:0", "127.8.9.10:0", "localhost:0", "[::1]:0"])
def test_loopback_listen_needs_no_token(listen: str) -> None:
    SupervisorConfig(workers=0, listen=listen).check()


def test_any_address_with_a_token_is_allowed() -> None:
    SupervisorConfig(workers=0, listen="0.0.0.0:0", token="s3cret").check()


def handshake(supervisor: Supervisor, token: str) -> object:
    async def run() -> bytes:
        conn = SupervisorConnection(supervisor)
        transport = FakeTransport(conn)
        conn.connection_made(transport)
        conn.data_received(
            encode_message(Hello(version=PROTOCOL_VERSION, role="client", token=token))
        )
        await asyncio.sleep(0)
        return bytes(transport.written)

    (frame,) = FrameDecoder().feed(asyncio.run(run()))
    return decode_message(frame)


def test_the_token_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    compare = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return compare(a, b)

    monkeypatch.setattr("coda.supervisor.server.hmac.compare_digest", spy)
    config = SupervisorConfig(workers=0, listen="127.0.0.1:0", token="s3cret", store="memory://")
    supervisor = Supervisor(config)
    refused = handshake(supervisor, "s3creT")
    assert isinstance(refused, Error) and refused.code == "token_invalid"
    assert isinstance(handshake(supervisor, "s3cret"), Welcome)
    assert calls == [(b"s3creT", b"s3cret"), (b"s3cret", b"s3cret")]


def test_a_missing_token_is_refused_apart_from_a_wrong_one() -> None:
    """So the client can say which it was, and what to do."""
    config = SupervisorConfig(workers=0, listen="127.0.0.1:0", token="s3cret", store="memory://")
    supervisor = Supervisor(config)
    missing, wrong = handshake(supervisor, ""), handshake(supervisor, "guess")
    assert isinstance(missing, Error) and isinstance(wrong, Error)
    assert (missing.code, missing.message) == (
        "token_required",
        "this supervisor requires a token and none was offered",
    )
    assert (wrong.code, wrong.message) == (
        "token_invalid",
        "the token offered is not this supervisor's --token",
    )
