from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from coda.testing import SupervisorProcess, wait_until


@pytest.fixture(scope="module")
def supervisor() -> Iterator[SupervisorProcess]:
    with SupervisorProcess(["tests.apps.basic"], workers=2) as sup:
        # the ready line comes before the workers have connected
        wait_until(lambda: len(sup.status()["workers"]) == 2, what="both workers")
        yield sup


@pytest.fixture(scope="module")
def steer_supervisor() -> Iterator[SupervisorProcess]:
    """A supervisor of the runs an operator steers (tests/apps/steer.py)."""
    with SupervisorProcess(["tests.apps.steer"], workers=2) as sup:
        wait_until(lambda: len(sup.status()["workers"]) == 2, what="both workers")
        yield sup


@pytest.fixture
def journal(tmp_path: Path) -> str:
    return str(tmp_path / "journal.log")


@pytest.fixture
def client(supervisor: SupervisorProcess):  # type: ignore[no-untyped-def]
    with supervisor.client() as client:
        yield client


@pytest.fixture
def counter(tmp_path: Path) -> str:
    return str(tmp_path / "executions.log")


def executions(path: str, label: str) -> int:
    file = Path(path)
    return file.read_text().splitlines().count(label) if file.exists() else 0
