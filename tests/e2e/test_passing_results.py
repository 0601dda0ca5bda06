"""A large result a workflow passes on reaches the next step whole, whether
the workflow left it untouched (sent as the bytes it came in) or changed it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from coda.testing import SupervisorProcess
from tests.apps import passing


@pytest.fixture(scope="module")
def supervisor() -> Iterator[SupervisorProcess]:
    with SupervisorProcess(["tests.apps.passing"], workers=2) as sup:
        yield sup


@pytest.mark.parametrize("size", [10, 2000])  # below and above coda._lazy.LAZY_MIN_BYTES
def test_an_untouched_result_is_passed_on_whole(supervisor: SupervisorProcess, size: int) -> None:
    with supervisor.client() as client:
        result = client.run(passing.pass_along, {"size": size, "touch": False}, timeout=60)
    assert result == ["e1", size, ["a", "b"], None]


@pytest.mark.parametrize("size", [10, 2000])
def test_a_result_changed_by_the_workflow_is_passed_on_changed(
    supervisor: SupervisorProcess, size: int
) -> None:
    with supervisor.client() as client:
        result = client.run(passing.pass_along, {"size": size, "touch": True}, timeout=60)
    assert result == ["e1", size, ["a", "b"], size]
