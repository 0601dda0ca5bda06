"""Real processes for the Celery compatibility tests.

One Celery worker (prefork, 2 children) and one Coda supervisor (2 workers,
``--celery-app``) per test session, beside each other on the Redis at
``CODA_TEST_REDIS_URL`` (tests/redis_keys.py). Every Redis key of the
session carries a unique prefix (``CODA_TEST_CELERY_PREFIX``, set here before
the app module is imported), so parallel sessions and xdist workers never
share queues or results, and deleted at the end of the session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("CODA_TEST_PREFIX_OWNER") != str(os.getpid()):  # once per test process
    os.environ["CODA_TEST_PREFIX_OWNER"] = str(os.getpid())
    run = os.environ["CODA_TEST_RUN"]  # tests/redis_keys.py
    os.environ["CODA_TEST_CELERY_PREFIX"] = f"coda-test-{run}-{uuid.uuid4().hex[:6]}:"

from coda.compat.celery import install, uninstall
from coda.compat.celery.routing import CodaRouter
from coda.testing import SupervisorProcess, wait_until
from tests.apps import celery_app
from tests.redis_keys import delete_keys

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.celery_app:app"
CODA_QUEUES = "default,coda-test-other"


class CeleryWorker:
    """``celery -A tests.apps.celery_app worker`` as a subprocess group."""

    def __init__(self, log_path: Path, concurrency: int = 2) -> None:
        argv = [sys.executable, "-m", "celery", "-A", "tests.apps.celery_app", "worker"]
        argv += ["-P", "prefork", "-c", str(concurrency), "-Q", "celery,coda-test-other"]
        argv += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
        argv += ["-l", "INFO", "-n", f"celery-test-{uuid.uuid4().hex[:6]}@%h"]
        self.log = open(log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            argv, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="session", autouse=True)
def redis_keys_removed() -> Iterator[None]:
    """Set up before, so torn down after, the workers that write to Redis:
    then delete every key of this process (queues, bindings, results)."""
    yield
    url, prefix = os.environ["CODA_TEST_REDIS_URL"], os.environ["CODA_TEST_CELERY_PREFIX"]
    delete_keys(url, f"{prefix}*")


@pytest.fixture(scope="session")
def celery_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    worker = CeleryWorker(tmp_path_factory.mktemp("celery") / "worker.log")
    try:
        uninstall(celery_app.app)
        # ready once it has run a task (no fixed sleep)
        assert celery_app.add.delay(1, 1).get(timeout=60) == 2
        yield worker
    finally:
        worker.stop()


def start_supervisor(workers: int = 2, *extra: str) -> SupervisorProcess:
    args = ["--celery-app", APP, "--queues", CODA_QUEUES, "--log-level", "WARNING", *extra]
    return SupervisorProcess(["tests.apps.celery_workflows"], workers=workers, extra_args=args)


@pytest.fixture(scope="session")
def coda_supervisor() -> Iterator[SupervisorProcess]:
    with start_supervisor() as supervisor:
        wait_until(lambda: len(supervisor.worker_pids()) == 2, timeout=30, what="2 workers")
        yield supervisor


Route = Callable[..., CodaRouter]


@pytest.fixture
def route(coda_supervisor: SupervisorProcess) -> Iterator[Route]:
    """``route({"name-or-glob": fraction}, **install_options)`` for this test only."""

    def install_for_test(rollout: Any = None, **options: Any) -> CodaRouter:
        options.setdefault("supervisor", coda_supervisor.address)
        return install(celery_app.app, rollout=rollout, **options)

    yield install_for_test
    uninstall(celery_app.app)


@pytest.fixture
def log_path(tmp_path: Path) -> str:
    return str(tmp_path / "events.log")
