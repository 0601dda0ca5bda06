"""A wrong address or a missing token: one line that says what is wrong and
what to do, from both clients and the ``coda`` command.

The foreign servers are real: Redis on 6379 (silent until it sees a newline,
so the handshake timeout ends the wait) and RabbitMQ on 5672 (answers with
its ``AMQP`` protocol header).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import coda
from coda.errors import HandshakeError
from coda.testing import SupervisorProcess
from tests.apps import basic
from tests.e2e.test_cli import coda_cli
from tests.services import RABBITMQ_ADDRESS, REDIS_ADDRESS

pytestmark = pytest.mark.e2e

REDIS = REDIS_ADDRESS
RABBITMQ = RABBITMQ_ADDRESS
NOT_REDIS = f"no Coda supervisor answered at {REDIS} within 1s"
NOT_RABBITMQ = (
    f"no Coda supervisor answered at {RABBITMQ}: an AMQP broker (RabbitMQ?) is listening there"
)
TOKEN = "tok-81c2"
NO_TOKEN_ADVICE = (
    "pass token= to Client or AsyncClient, --token to coda commands, or set CODA_TOKEN"
)


@pytest.fixture(scope="module")
def guarded() -> Iterator[SupervisorProcess]:
    with SupervisorProcess(["tests.apps.basic"], workers=1, extra_args=["--token", TOKEN]) as sup:
        yield sup


def refusal(call: object) -> str:
    with pytest.raises(HandshakeError) as caught:
        call()  # type: ignore[operator]
    return str(caught.value)


def async_refusal(address: str, **kwargs: object) -> str:
    async def status() -> None:
        async with coda.AsyncClient(address, **kwargs) as client:  # type: ignore[arg-type]
            await client.status()

    return refusal(lambda: asyncio.run(status()))


def cli_error(*args: str) -> str:
    done = coda_cli(*args, env={"CODA_TOKEN": ""})
    assert done.returncode == 1, done.stdout
    (line,) = done.stderr.strip().splitlines()
    return line


# -- an address where no Coda supervisor listens -------------------------------


def test_a_redis_port_is_no_supervisor_and_the_client_says_so_after_its_timeout() -> None:
    message = refusal(lambda: coda.Client(REDIS, handshake_timeout=1.0).status())
    assert message == (
        f"{NOT_REDIS}: something accepted the connection but did not answer the handshake "
        "(port 6379 is Redis's)"
    )
    assert async_refusal(REDIS, handshake_timeout=1.0) == message


def test_the_handshake_timeout_is_a_few_seconds_by_default() -> None:
    message = refusal(lambda: coda.Client(REDIS).status())
    assert message.startswith(f"no Coda supervisor answered at {REDIS} within 5s:")


def test_rabbitmqs_port_is_named_at_once() -> None:
    assert refusal(lambda: coda.Client(RABBITMQ).status()) == NOT_RABBITMQ
    assert async_refusal(RABBITMQ) == NOT_RABBITMQ
    with coda.Client(RABBITMQ) as client:
        assert refusal(lambda: client.run(basic.add, args={"x": 1, "y": 2})) == NOT_RABBITMQ


def test_the_coda_command_says_it_in_one_line() -> None:
    assert cli_error("status", "--supervisor", RABBITMQ) == f"Error: {NOT_RABBITMQ}"
    line = cli_error("run", "tests.apps.basic.add", "--supervisor", REDIS)
    assert line.startswith(f"Error: no Coda supervisor answered at {REDIS} within 5s")


# -- a supervisor that requires a token ------------------------------------------


def test_no_token_given_says_that_none_was_and_how_to_give_one(guarded: SupervisorProcess) -> None:
    expected = (
        f"the supervisor at {guarded.address} requires a token and none was given: "
        f"{NO_TOKEN_ADVICE}"
    )
    assert refusal(lambda: coda.Client(guarded.address).status()) == expected
    assert async_refusal(guarded.address) == expected
    assert cli_error("status", "--supervisor", guarded.address) == f"Error: {expected}"


def test_a_wrong_token_is_called_wrong(guarded: SupervisorProcess) -> None:
    expected = (
        f"the supervisor at {guarded.address} refused the token given, which is not its "
        f"--token: {NO_TOKEN_ADVICE}"
    )
    assert refusal(lambda: coda.Client(guarded.address, token="tok-0000").status()) == expected
    assert async_refusal(guarded.address, token="tok-0000") == expected
    run = ("run", "tests.apps.basic.add", "--supervisor", guarded.address, "--token", "tok-0000")
    assert cli_error(*run) == f"Error: {expected}"


def test_the_right_token_still_opens_the_door(guarded: SupervisorProcess) -> None:
    with coda.Client(guarded.address, token=TOKEN) as client:
        assert client.run(basic.add, args={"x": 2, "y": 3}, timeout=30) == 5
