from __future__ import annotations

import os

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="bigger fault and fuzz sizes")


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ.get("CODA_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
