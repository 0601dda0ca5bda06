from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="bigger fault and fuzz sizes")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("CODA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session", autouse=True)
def private_state_home() -> Iterator[str]:
    """No supervisor of the suite writes to the real ``~/.local/state/coda``:
    one started without ``--store`` (and the processes it starts) keep their
    state in a folder of this test process, removed at the end."""
    folder = tempfile.mkdtemp(prefix="coda-test-state-")
    previous = os.environ.get("XDG_STATE_HOME")
    os.environ["XDG_STATE_HOME"] = folder
    yield folder
    if previous is None:
        os.environ.pop("XDG_STATE_HOME", None)
    else:
        os.environ["XDG_STATE_HOME"] = previous
    shutil.rmtree(folder, ignore_errors=True)
