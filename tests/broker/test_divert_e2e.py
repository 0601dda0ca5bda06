"""Mixed delivery: from the same coda:// traffic, Coda workers take the Celery
messages the supervisor diverts (by task or queue), stock Celery workers the rest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.testing import SupervisorProcess, wait_until
from tests.apps import broker_app
from tests.broker.processes import CeleryWorker, free_port

pytestmark = pytest.mark.e2e

TIMEOUT = 30
APP = "tests.apps.broker_app"


def succeeded(supervisor: SupervisorProcess, task: str) -> int:
    """How many times Coda workers ran the task (the supervisor's per-name counts)."""
    counts = supervisor.status()["names"].get(f"{APP}.{task}", {})
    return int(counts.get("succeeded", 0))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupervisorProcess, Any]]:
    address = f"127.0.0.1:{free_port()}"
    url = f"coda://{address}"
    supervisor = SupervisorProcess(
        [],
        workers=1,
        listen=address,
        extra_args=[
            "--celery-app",
            f"{APP}:app",
            "--celery-divert",
            f"{APP}.mul,queue:to-coda",
        ],
        env={"CODA_BROKER_URL": url},
    )
    worker = None
    try:
        worker = CeleryWorker(address, tmp_path_factory.mktemp("mixed") / "celery.log")
        producer = Celery("producer", broker=url, backend=url)
        yield supervisor, producer
    finally:
        if worker is not None:
            worker.stop()
        supervisor.close()


def test_diverted_tasks_run_on_coda_workers_the_rest_on_celery(
    mixed: tuple[SupervisorProcess, Any],
) -> None:
    supervisor, producer = mixed
    before = succeeded(supervisor, "mul"), succeeded(supervisor, "where")
    on_celery = producer.send_task(f"{APP}.where").get(timeout=TIMEOUT)
    on_coda = producer.send_task(f"{APP}.where", queue="to-coda").get(timeout=TIMEOUT)
    assert not on_celery.startswith("coda-") and on_coda.startswith("coda-")
    assert producer.send_task(f"{APP}.mul", (6, 7)).get(timeout=TIMEOUT) == 42
    after = (before[0] + 1, before[1] + 1)
    wait_until(lambda: (succeeded(supervisor, "mul"), succeeded(supervisor, "where")) == after)


def test_a_chain_crosses_fleets_through_the_broker(mixed: tuple[SupervisorProcess, Any]) -> None:
    supervisor, producer = mixed
    before = succeeded(supervisor, "mul")
    add, mul = producer.signature(f"{APP}.add"), producer.signature(f"{APP}.mul")
    chained = (add.clone((1, 2)) | mul.clone((10,)) | add.clone((5,))).apply_async()
    assert chained.get(timeout=TIMEOUT) == 35
    wait_until(lambda: succeeded(supervisor, "mul") == before + 1, what="mul to run on Coda")


def test_a_diverted_task_that_rejects_with_requeue_gets_a_redelivery(
    mixed: tuple[SupervisorProcess, Any], tmp_path: Path
) -> None:
    supervisor, producer = mixed
    path = str(tmp_path / "deliveries")
    result = producer.send_task(f"{APP}.reject_once", (path,), queue="to-coda")
    assert result.get(timeout=TIMEOUT) == "ran on the redelivery"
    assert broker_app.lines(path) == ["run redelivered=False", "run redelivered=True"]
    # the Celery result is stored before the Coda job ends: wait for its count
    wait_until(lambda: succeeded(supervisor, "reject_once") == 1, what="the Coda run to end")
    assert supervisor.status()["names"][f"{APP}.reject_once"]["requeued"] == 1
