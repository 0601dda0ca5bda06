"""The kombu transport's first contact says what is wrong, as the clients do."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from kombu import Connection

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.errors import HandshakeError
from coda.supervisor import SupervisorConfig
from coda.testing import InProcessSupervisor
from tests.services import RABBITMQ_ADDRESS

TOKEN = "tok-5e1d"
URL_ADVICE = "put it in the broker URL (coda://:TOKEN@HOST:PORT) or set CODA_TOKEN"


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    config = SupervisorConfig(workers=0, listen="127.0.0.1:0", token=TOKEN, store="memory://")
    with InProcessSupervisor(config) as supervisor:
        yield supervisor.address


@pytest.fixture(autouse=True)
def no_token_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CODA_TOKEN", raising=False)


def connect(url: str) -> str:
    with Connection(url) as connection, pytest.raises(HandshakeError) as caught:
        connection.connect()
    return str(caught.value)


def test_a_coda_url_pointing_at_rabbitmq_names_it() -> None:
    assert connect(f"coda://{RABBITMQ_ADDRESS}") == (
        f"no Coda supervisor answered at {RABBITMQ_ADDRESS}: an AMQP broker (RabbitMQ?) is "
        "listening there"
    )


def test_a_url_without_the_token_says_where_to_put_it(guarded: str) -> None:
    assert connect(f"coda://{guarded}") == (
        f"the supervisor at {guarded} requires a token and none was given: {URL_ADVICE}"
    )


def test_a_wrong_token_in_the_url_is_called_wrong(guarded: str) -> None:
    assert connect(f"coda://:tok-0000@{guarded}") == (
        f"the supervisor at {guarded} refused the token given, which is not its --token: "
        f"{URL_ADVICE}"
    )


def test_the_right_token_in_the_url_connects(guarded: str) -> None:
    with Connection(f"coda://:{TOKEN}@{guarded}") as connection:
        connection.connect()
        assert connection.connected
