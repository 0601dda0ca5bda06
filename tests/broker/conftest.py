"""A Coda supervisor as Celery's broker, and stock Celery workers consuming from it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from coda.testing import SupervisorProcess
from tests.broker.processes import CeleryWorker, broker_queue

__all__ = ["CeleryWorker", "broker_queue"]


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
