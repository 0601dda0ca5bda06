"""A supervisor bound to every interface serves only clients with the token."""

from __future__ import annotations

import socket

import pytest

import coda
from coda.errors import HandshakeError, RequestRefusedError
from coda.testing import SupervisorProcess
from tests.apps import basic

pytestmark = pytest.mark.e2e


def reachable_addresses(port: int) -> list[str]:
    """Loopback, plus this machine's outward address when it has one."""
    hosts = ["127.0.0.1"]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
            outward = probe.getsockname()[0]
        except OSError:
            outward = None
    if outward and not outward.startswith("127."):
        hosts.append(outward)
    return [f"{host}:{port}" for host in hosts]


def test_all_interfaces_with_a_token_from_the_environment() -> None:
    with SupervisorProcess(
        ["tests.apps.basic"], workers=1, listen="0.0.0.0:0", env={"CODA_TOKEN": "tok-3f9a"}
    ) as sup:
        assert sup.address.startswith("0.0.0.0:")
        port = int(sup.address.rsplit(":", 1)[1])
        for address in reachable_addresses(port):
            with pytest.raises(HandshakeError, match="token"):
                coda.Client(address).status()
            with pytest.raises(HandshakeError, match="token"):
                coda.Client(address, token="tok-3f9b").status()
            with coda.Client(address, token="tok-3f9a") as client:
                assert client.run(basic.add, args={"x": 20, "y": 22}, timeout=30) == 42


def test_pickle_payloads_only_with_accept_pickle(supervisor: SupervisorProcess) -> None:
    with (
        coda.Client(supervisor.address, serializer="pickle") as client,
        pytest.raises(RequestRefusedError, match="content_disallowed"),
    ):
        client.run(basic.add, args={"x": 1, "y": 2}, timeout=30)
    with (
        SupervisorProcess(["tests.apps.basic"], workers=1, extra_args=["--accept-pickle"]) as sup,
        coda.Client(sup.address, serializer="pickle") as client,
    ):
        assert client.run(basic.add, args={"x": 1, "y": 2}, timeout=30) == 3
