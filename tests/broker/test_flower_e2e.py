"""A real Flower process on ``coda://`` shows the Coda node and the tasks Coda
runs (issue 13, "What must work" 2).

The supervisor is the broker, adopts ``tests.apps.broker_app`` and diverts
``echo`` to its Coda worker, whose task events (``worker_send_task_events``)
go to the broker's ``celeryev`` exchange. ``celery flower`` runs as a user
starts it; the test reads its HTTP API.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

import coda.compat.kombu  # noqa: F401  (registers coda://)
from coda.testing import SupervisorProcess, wait_until
from tests.broker.processes import free_port, start_logged, stop_group

pytestmark = pytest.mark.e2e

APP = "tests.apps.broker_app"
NODE = f"coda@{socket.gethostname()}"
TIMEOUT = 30


class Flower:
    def __init__(self, broker_url: str, log: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "celery", "-A", APP, "flower"]
        argv += ["--address=127.0.0.1", f"--port={self.port}", "--inspect_timeout=5000"]
        env = {**os.environ, "CODA_BROKER_URL": broker_url, "FLOWER_UNAUTHENTICATED_API": "true"}
        self.log = log
        self.process = start_logged(argv, env, log)
        wait_until(self._ready, timeout=60, interval=0.2, what=f"flower to answer ({log})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"flower exited:\n{self.log.read_text(errors='replace')}")
        with contextlib.suppress(OSError):
            return self.get("/healthcheck") == "OK"
        return False

    def get(self, path: str) -> Any:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            body = answer.read().decode()
        return json.loads(body) if answer.headers.get_content_type() == "application/json" else body

    def stop(self) -> None:
        stop_group(self.process)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SupervisorProcess, Flower]]:
    address = f"127.0.0.1:{free_port()}"
    url = f"coda://{address}"
    supervisor = SupervisorProcess(
        [],
        workers=1,
        listen=address,
        extra_args=["--celery-app", f"{APP}:app", "--celery-divert", f"{APP}.echo"],
        env={"CODA_BROKER_URL": url, "CODA_TEST_TASK_EVENTS": "1"},
    )
    flower = None
    try:
        # Flower's first stats must see the worker: wait for it to connect
        wait_until(lambda: len(supervisor.status()["workers"]) == 1, what="the worker")
        flower = Flower(url, tmp_path_factory.mktemp("flower") / "flower.log")
        yield supervisor, flower
    finally:
        if flower is not None:
            flower.stop()
        supervisor.close()


def _events_consumed(supervisor: SupervisorProcess) -> bool:
    queues = supervisor.status()["broker"]["queues"]
    return any(name.startswith("celeryev.") and q["consumers"] for name, q in queues.items())


def test_flower_lists_the_coda_node(fleet: tuple[SupervisorProcess, Flower]) -> None:
    supervisor, flower = fleet
    workers = flower.get("/api/workers?refresh=1")
    assert NODE in workers, workers
    node = workers[NODE]
    assert node["stats"]["pool"]["processes"] == supervisor.worker_pids()
    assert f"{APP}.echo" in node["registered"]
    assert [queue["name"] for queue in node["active_queues"]] == ["default"]


def test_flower_shows_the_tasks_coda_runs(fleet: tuple[SupervisorProcess, Flower]) -> None:
    supervisor, flower = fleet
    wait_until(lambda: _events_consumed(supervisor), what="flower to consume celeryev")
    producer = Celery(
        "flower-test", broker=supervisor_url(supervisor), backend=supervisor_url(supervisor)
    )
    result = producer.send_task(f"{APP}.echo", ("shown",))
    assert result.get(timeout=TIMEOUT) == "shown"

    def listed() -> dict[str, Any] | None:
        task = flower.get("/api/tasks").get(result.id)
        return task if task and task["state"] == "SUCCESS" else None

    task = wait_until(listed, timeout=TIMEOUT, interval=0.2, what="the task in flower")
    assert task["name"] == f"{APP}.echo" and task["args"] == "('shown',)"
    assert task["worker"].startswith("coda-") and task["result"] == "'shown'"
    assert task["received"] and task["started"] and task["succeeded"]


def supervisor_url(supervisor: SupervisorProcess) -> str:
    return f"coda://{supervisor.address}"
