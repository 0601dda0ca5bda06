"""TLS on the supervisor's TCP listener, with and without client certificates."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import coda
from coda.errors import CodaError, ConfigurationError, HandshakeError
from coda.testing import SupervisorProcess
from tests.apps import basic
from tests.e2e.certs import Pki, make_pki

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_supervisor(pki: Pki) -> Iterator[SupervisorProcess]:
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    with SupervisorProcess(["tests.apps.basic"], workers=1, extra_args=args) as sup:
        yield sup


def trusting(ca: Path, client: Pki | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        context.load_cert_chain(str(client.client_cert), str(client.client_key))
    return context


def coda_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coda", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_verified_clients_are_served_over_tls(tls_supervisor: SupervisorProcess, pki: Pki) -> None:
    with coda.Client(tls_supervisor.address, ssl=trusting(pki.ca)) as client:
        assert client.run(basic.add, args={"x": 1, "y": 2}, timeout=30) == 3
        assert client.run(basic.fan_out, args={"n": 3}, timeout=30) == [0, 2, 4]

    async def run_async() -> int:
        async with coda.AsyncClient(tls_supervisor.address, ssl=trusting(pki.ca)) as client:
            results = await asyncio.gather(
                *(client.run(basic.add, args={"x": i, "y": 1}, timeout=30) for i in range(20))
            )
            return sum(results)

    assert asyncio.run(run_async()) == sum(range(1, 21))


def test_clients_that_cannot_verify_are_refused(
    tls_supervisor: SupervisorProcess, pki: Pki
) -> None:
    address = tls_supervisor.address
    with pytest.raises(HandshakeError, match="certificate verify failed"):
        coda.Client(address, ssl=True).status()  # the test CA is not a system CA
    with pytest.raises(HandshakeError, match="certificate verify failed"):
        coda.Client(address, ssl=trusting(pki.other_ca)).status()
    with pytest.raises(CodaError):  # plain TCP to a TLS listener: the server hangs up
        coda.Client(address, connect_timeout=5).status()

    async def async_refused() -> None:
        async with coda.AsyncClient(address, ssl=trusting(pki.other_ca)) as client:
            await client.status()

    with pytest.raises(HandshakeError, match="certificate verify failed"):
        asyncio.run(async_refused())
    with coda.Client(address, ssl=trusting(pki.ca)) as client:  # still serving
        assert client.run(basic.add, args={"x": 2, "y": 2}, timeout=30) == 4


def test_cli_speaks_tls(tls_supervisor: SupervisorProcess, pki: Pki) -> None:
    address = tls_supervisor.address
    done = coda_cli(
        "run", "tests.apps.basic.add", "--args", '{"x": 1, "y": 2}',
        "--supervisor", address, "--tls-ca", str(pki.ca),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3"
    status = coda_cli("status", "--supervisor", address, "--tls-ca", str(pki.ca))
    assert status.returncode == 0 and "workers:" in status.stdout, status.stderr
    untrusted = coda_cli("status", "--supervisor", address, "--tls")
    assert untrusted.returncode == 1 and "certificate verify failed" in untrusted.stderr


def test_mutual_tls_requires_a_client_certificate(pki: Pki) -> None:
    args = [
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
        "--tls-ca", str(pki.ca),
    ]  # fmt: skip
    with SupervisorProcess(["tests.apps.basic"], workers=1, extra_args=args) as sup:
        with pytest.raises(CodaError, match="(?i)certificate"):
            coda.Client(sup.address, ssl=trusting(pki.ca)).status()
        with coda.Client(sup.address, ssl=trusting(pki.ca, client=pki)) as client:
            assert client.run(basic.add, args={"x": 5, "y": 5}, timeout=30) == 10
        done = coda_cli(
            "status", "--supervisor", sup.address, "--tls-ca", str(pki.ca),
            "--tls-cert", str(pki.client_cert), "--tls-key", str(pki.client_key),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_tls_configuration_errors(pki: Pki, tmp_path: Path) -> None:
    done = coda_cli(
        "supervisor", "--workers", "0", "--store", "memory://", "--tls-key", str(pki.server_key)
    )
    assert done.returncode == 1 and "--tls-key needs --tls-cert" in done.stderr
    only_unix = coda_cli(
        "supervisor", "--workers", "0", "--store", "memory://",
        "--listen", "none", "--unix", str(tmp_path / "s.sock"),
        "--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key),
    )  # fmt: skip
    assert only_unix.returncode == 1 and "TCP listener" in only_unix.stderr
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    bad = coda_cli(
        "supervisor", "--workers", "0", "--store", "memory://", "--listen", "127.0.0.1:0",
        "--tls-cert", str(garbage), "--tls-key", str(pki.server_key),
    )  # fmt: skip
    assert bad.returncode == 1 and "cannot load the TLS certificate" in bad.stderr
    with pytest.raises(ConfigurationError, match="Unix sockets"):
        coda.Client(str(tmp_path / "s.sock"), ssl=True).status()
