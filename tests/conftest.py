from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest
import redis

from tests.redis_keys import delete_keys, keys, run_pattern, setup_environment

setup_environment()  # before any test module reads CODA_TEST_REDIS_URL


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="bigger fault and fuzz sizes")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["CODA_TEST_REDIS_URL"]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The run fails if it left keys in Redis (checked once, after every
    xdist worker has cleaned up after itself); they are deleted all the same."""
    if hasattr(session.config, "workerinput"):
        return
    url = os.environ["CODA_TEST_REDIS_URL"]
    try:
        left = keys(url, run_pattern())
    except redis.ConnectionError:
        return  # no Redis: no test could write to it
    if not left:
        return
    delete_keys(url, run_pattern())
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        shown = ", ".join(left[:5]) + (", ..." if len(left) > 5 else "")
        reporter.ensure_newline()
        reporter.write_line(
            f"FAILED: the tests left {len(left)} Redis key(s) in {url} (now deleted): {shown}",
            red=True,
        )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
