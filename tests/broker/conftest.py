"""A Coda supervisor as Celery's broker, and stock Celery workers consuming from it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from coda.testing import SupervisorProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]


class CeleryWorker:
    """``celery -A tests.apps.broker_app worker -P prefork`` in its own process group."""

    def __init__(
        self,
        address: str,
        log: Path,
        *,
        queues: str = "celery",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
    ):
        self.log = log
        self.name = f"w{uuid.uuid4().hex[:8]}@%h"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.apps.broker_app",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
            "-Q",
            queues,
            "-n",
            self.name,
        ]
        env = {**os.environ, "CODA_BROKER_URL": f"coda://{address}", **(env or {})}
        env.pop("CODA_RESULT_BACKEND", None)
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(self._ready, timeout=60, interval=0.05, what=f"celery worker ready ({log})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"celery worker exited:\n{self.output()}")
        return " ready." in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(15)
        self.kill()


@pytest.fixture(scope="session")
def broker() -> Iterator[SupervisorProcess]:
    """``coda supervisor --workers 0``: a pure broker and result backend."""
    with SupervisorProcess([], workers=0) as supervisor:
        yield supervisor


@pytest.fixture(scope="session")
def celery_app(broker: SupervisorProcess) -> Any:
    from tests.apps.broker_app import app

    url = f"coda://{broker.address}"
    app.conf.update(broker_url=url, result_backend=url)
    return app


@pytest.fixture(scope="session")
def celery_worker(
    broker: SupervisorProcess, celery_app: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(broker.address, tmp_path_factory.mktemp("celery") / "worker.log")
    try:
        yield worker
    finally:
        worker.stop()


def broker_queue(broker: SupervisorProcess, name: str) -> dict[str, int]:
    queues: dict[str, dict[str, int]] = broker.status()["broker"]["queues"]
    return queues.get(name, {"ready": 0, "held": 0, "unacked": 0, "consumers": 0})
