"""What finished work holds in the supervisor's memory: nothing of its
arguments. Large arguments grow the supervisor while their tasks are in
flight; once those have finished, it is back near where it started."""

from __future__ import annotations

import contextlib

import pytest

from coda.testing import SupervisorProcess, wait_until
from tests.apps import sizes
from tests.e2e.rawpeer import rss_bytes

pytestmark = pytest.mark.e2e

MB = 1000 * 1000
MiB = 1024 * 1024

TASKS = 6
ARGUMENT = 20 * MB
# Generous: SQLite's page caches (2 MiB per connection), the allocator's
# slack, the recently finished jobs kept for reads (16 MiB at most). What
# finished work kept before is every argument, 6 x 20 MB here: 120 MB.
MARGIN = 64 * MiB


def test_supervisor_memory_returns_near_its_baseline_after_large_arguments_finish() -> None:
    with SupervisorProcess(["tests.apps.sizes"], workers=2) as sup:
        wait_until(lambda: len(sup.status()["workers"]) == 2, what="both workers")
        client = sup.client()
        assert client.run(sizes.length, args={"blob": b"warm up"}, timeout=30) == 7
        baseline = rss_bytes(sup.pid)
        blob = b"y" * ARGUMENT
        handles = [client.submit(sizes.length, args={"blob": blob}) for _ in range(TASKS)]
        assert [handle.result(timeout=120) for handle in handles] == [ARGUMENT] * TASKS
        limit = baseline + MARGIN
        with contextlib.suppress(TimeoutError):  # the assertion below says by how much
            wait_until(lambda: rss_bytes(sup.pid) <= limit, timeout=10)
        after = rss_bytes(sup.pid)
        assert after <= limit, (
            f"the supervisor holds {after // MiB} MiB after its tasks finished, "
            f"{baseline // MiB} MiB before them (margin {MARGIN // MiB} MiB)"
        )
        assert sup.status()["store"]["recent_bytes"] <= 16 * MiB
