"""``coda://`` on a fleet: published through one supervisor, consumed through
another, results readable through any; the broker's leader killed mid-way.

Real supervisors (``--workers 0``: pure brokers) on one PostgreSQL schema, a
stock ``celery worker`` and a Celery producer in this process.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from celery import Celery
from celery.result import AsyncResult
from kombu import Connection

import coda.compat.kombu  # noqa: F401  (registers coda:// with kombu)
from coda import Client
from coda.testing import SupervisorProcess, wait_until
from tests.apps.journal import lines
from tests.broker.processes import CeleryWorker
from tests.e2e.certs import make_pki
from tests.postgres import fresh_schema

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ADD = "tests.apps.acks_late_app.add"
RECORD = "tests.apps.acks_late_app.record"


def broker_member(url: str) -> SupervisorProcess:
    return SupervisorProcess([], workers=0, store=url, extra_args=["--fleet-lease", "30"])


def producer(address: str) -> Celery:
    url = f"coda://{address}"
    app = Celery("producer", broker=url, backend=url)
    app.conf.update(result_expires=600, task_acks_late=True)
    return app


def broker_role(sup: SupervisorProcess) -> str:
    role: str = sup.status()["broker"]["fleet"]["role"]
    return role


@contextlib.contextmanager
def two_brokers() -> Iterator[tuple[SupervisorProcess, SupervisorProcess]]:
    with fresh_schema() as url, broker_member(url) as first, broker_member(url) as second:
        yield first, second


def test_a_message_published_through_one_supervisor_is_consumed_through_another(
    tmp_path: Path,
) -> None:
    with two_brokers() as (a, b):
        assert sorted([broker_role(a), broker_role(b)]) == ["leader", "relay"]
        app = producer(a.address)
        consumer = CeleryWorker(b.address, tmp_path / "worker.log", app="tests.apps.acks_late_app")
        try:
            results = [app.send_task(ADD, (i, i)) for i in range(10)]
            assert [r.get(timeout=60) for r in results] == [2 * i for i in range(10)]
            reader = producer(b.address)  # results are readable through either
            assert AsyncResult(results[3].id, app=reader).get(timeout=10) == 6
        finally:
            consumer.stop()


def test_killing_the_broker_leader_loses_no_confirmed_message(tmp_path: Path) -> None:
    path = str(tmp_path / "executions.log")
    with two_brokers() as (a, b):
        leader, relay = (a, b) if broker_role(a) == "leader" else (b, a)
        app = producer(relay.address)
        sent = [app.send_task(RECORD, (path, n)) for n in range(20)]  # confirmed, not run
        leader.kill()  # kill -9 of its process group
        wait_until(lambda: broker_role(relay) == "leader", timeout=60, what="a takeover")
        consumer = CeleryWorker(
            relay.address, tmp_path / "worker.log", app="tests.apps.acks_late_app"
        )
        try:
            assert sorted(r.get(timeout=60) for r in sent) == list(range(20))
        finally:
            consumer.stop()
        assert sorted(int(line.split()[0]) for line in lines(path)) == list(range(20))


def test_over_tls_the_relay_reaches_the_leader_over_tls(tmp_path: Path) -> None:
    """Supervisors served with --tls-cert accept only TLS; a follower's relay
    to the leader speaks it too (it once connected in plain TCP and every
    relayed client was closed)."""
    pki = make_pki(tmp_path)
    tls = ["--tls-cert", str(pki.server_cert), "--tls-key", str(pki.server_key)]
    trust = ssl.create_default_context(cafile=str(pki.ca))

    def role(sup: SupervisorProcess) -> str:
        with Client(sup.address, ssl=trust) as client:
            found: str = client.status()["broker"]["fleet"]["role"]
            return found

    with fresh_schema() as url:
        members = [
            SupervisorProcess([], workers=0, store=url, extra_args=["--fleet-lease", "30", *tls])
            for _ in range(2)
        ]
        with members[0] as a, members[1] as b:
            leader, relay = (a, b) if role(a) == "leader" else (b, a)
            assert role(relay) == "relay"
            options = {"ca_certs": str(pki.ca)}
            with Connection(f"coda://{relay.address}", ssl=options) as connection:
                queue = connection.SimpleQueue("fleet-over-tls")
                for i in range(5):
                    queue.put({"i": i})
                queue.close()
            with Connection(f"coda://{leader.address}", ssl=options) as connection:
                queue = connection.SimpleQueue("fleet-over-tls")
                got = [queue.get(timeout=10) for _ in range(5)]
                for message in got:
                    message.ack()
                queue.close()
    assert [message.payload["i"] for message in got] == list(range(5))
