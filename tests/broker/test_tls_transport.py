"""``coda://`` over TLS: the transport (``ssl=``, Celery's ``broker_use_ssl``)
and the result backend (``result_backend_transport_options={"ssl": ...}``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery
from kombu import Connection

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.compat.kombu.backend import CodaBackend
from coda.testing import SupervisorProcess
from tests.e2e.certs import Pki, make_pki

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_broker(pki: Pki) -> Iterator[SupervisorProcess]:
    args = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    with SupervisorProcess([], workers=0, extra_args=args) as supervisor:
        yield supervisor


def test_transport_and_backend_speak_tls(tls_broker: SupervisorProcess, pki: Pki) -> None:
    url = f"coda://{tls_broker.address}"
    with Connection(url, ssl={"ca_certs": str(pki.ca)}) as connection:
        queue = connection.SimpleQueue("over-tls")
        for i in range(50):
            queue.put({"i": i, "pad": "x" * 40_000})  # several TLS records per message
        got = [queue.get(timeout=5) for _ in range(50)]
        assert [m.payload["i"] for m in got] == list(range(50))
        for message in got:
            message.ack()
        queue.close()
    app = Celery("tls", broker=url)
    app.conf.result_backend_transport_options = {"ssl": {"ca_certs": str(pki.ca)}}
    backend = CodaBackend(app, url=url)
    backend.store_result("tls-task", {"ok": True}, "SUCCESS")
    assert backend.wait_for("tls-task", timeout=5)["result"] == {"ok": True}


def test_an_untrusted_supervisor_is_refused(tls_broker: SupervisorProcess, pki: Pki) -> None:
    url = f"coda://{tls_broker.address}"
    connection = Connection(url, ssl={"ca_certs": str(pki.other_ca)}, connect_timeout=5)
    with connection, pytest.raises(Exception, match="TLS|certificate"):
        connection.ensure_connection(max_retries=1)
