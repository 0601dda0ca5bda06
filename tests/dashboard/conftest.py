"""A supervisor serving its dashboard (``--http``), and Chromium to look at it.

Chromium is the system's (Debian's ``chromium``, which ``.ci/run`` installs
when missing), driven by Playwright with ``executable_path``: Playwright
never downloads a browser here. Screenshots go to ``$CODA_TEST_ARTIFACTS``,
else to ``tests/artifacts/`` (git ignores it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from coda.testing import SupervisorProcess, wait_until

expect.set_options(timeout=15_000)  # a loaded machine; each check still ends as soon as it holds

ARTIFACTS = Path(
    os.environ.get("CODA_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "artifacts"
)


def chromium_path() -> str | None:
    return os.environ.get("CODA_CHROMIUM") or shutil.which("chromium")


APPS = ("tests.apps.steer", "tests.apps.basic", "examples.ingest.workflows")


def start_dashboard(
    *extra: str, workers: int = 2, apps: tuple[str, ...] = APPS, env: dict[str, str] | None = None
) -> SupervisorProcess:
    sup = SupervisorProcess(
        apps,
        workers=workers,
        env=env,
        extra_args=["--http", "127.0.0.1:0", "--log-level", "WARNING", *extra],
    )
    if workers:
        wait_until(lambda: len(sup.status()["workers"]) == workers, what="the workers")
    assert sup.dashboard_url is not None, "no 'coda dashboard on' line"
    return sup


@pytest.fixture(scope="module")
def dashboard() -> Iterator[SupervisorProcess]:
    with start_dashboard() as sup:
        yield sup


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = chromium_path()
    if executable is None:
        # a failure, not a skip: the suite must not pass without checking the dashboard
        pytest.fail("no chromium on PATH: apt-get install chromium (or set CODA_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def screenshot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
