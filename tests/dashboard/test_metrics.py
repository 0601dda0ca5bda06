"""``/metrics`` on the dashboard's port, against a real supervisor and real
workers: a known workload, then exact counts read back with
prometheus_client's own parser."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import coda
from coda.testing import SupervisorProcess, wait_until
from tests.apps import metered
from tests.apps.journal import lines
from tests.metric_samples import Samples, counted, parse, value

pytestmark = pytest.mark.e2e

APP = "tests.apps.metered"
TOKEN = "s3cret-metrics-token"


def scrape(url: str, headers: dict[str, str] | None = None) -> Samples:
    response = httpx.get(f"{url}metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


def outcomes(samples: Samples, prefix: str, name: str) -> dict[str, float]:
    """Every outcome counted for ``name``, zeros left out."""
    return {what: count for what, count in counted(samples, prefix, name).items() if count}


def durations(samples: Samples, family: str, name: str) -> float:
    return value(samples, f"coda_{family}_duration_seconds_count", name=name)


@pytest.fixture(scope="module")
def supervisor() -> Iterator[SupervisorProcess]:
    with SupervisorProcess(
        [APP], workers=2, extra_args=["--http", "127.0.0.1:0", "--log-level", "WARNING"]
    ) as sup:
        wait_until(lambda: len(sup.status()["workers"]) == 2, what="the workers")
        assert sup.dashboard_url is not None, "no 'coda dashboard on' line"
        yield sup


def run_the_workload(sup: SupervisorProcess, tmp_path: Path) -> None:
    """5 tasks succeed, 2 fail, 1 succeeds on its third try, a workflow fails
    after two cached steps and succeeds from the cache, a workflow is
    cancelled while its task runs, 3 tasks wait on a queue nobody consumes,
    and a worker is killed (and replaced)."""
    client = sup.client()
    for x in range(5):
        assert client.run(metered.succeeds, args={"x": x}, timeout=30) == x
    for _ in range(2):
        with pytest.raises(coda.TaskFailed):
            client.run(metered.fails, args={"message": "no"}, timeout=30)
    flaky = {"journal": str(tmp_path / "flaky"), "fail_times": 2}
    assert client.run(metered.flaky, args=flaky, timeout=30) == 3
    steps = {"journal": str(tmp_path / "steps")}
    assert client.run(metered.fails_once_after_two_steps, args=steps, timeout=30) == ["a", "b"]
    assert lines(steps["journal"]) == ["step a", "step b"]  # the rerun ran neither again

    sleeper = str(tmp_path / "sleeper")
    handle = client.submit(metered.waits_on_a_sleeper, args={"journal": sleeper})
    wait_until(lambda: lines(sleeper) == ["sleeps began"], what="the sleeper to start")
    client.cancel(handle.run_id)
    with pytest.raises(coda.Cancelled):
        handle.result(timeout=30)
    for _ in range(3):
        client.submit(metered.parked, args={})

    victim = sup.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: (
            sup.status()["supervisor"]["worker_restarts"] == 1 and len(sup.status()["workers"]) == 2
        ),
        what="the killed worker's replacement",
    )


def test_metrics_count_a_known_workload_exactly(
    supervisor: SupervisorProcess, tmp_path: Path
) -> None:
    url = supervisor.dashboard_url or ""
    run_the_workload(supervisor, tmp_path)
    name = f"{APP}.sleeps"  # its cancel may land after its run's
    wait_until(
        lambda: value(scrape(url), "coda_tasks_cancelled_total", name=name) == 1,
        what="the sleeper's cancel to be counted",
    )
    samples = scrape(url)

    assert {
        short: outcomes(samples, "tasks", f"{APP}.{short}")
        for short in ("succeeds", "fails", "flaky", "step", "sleeps")
    } == {
        "succeeds": {"started": 5, "succeeded": 5},
        "fails": {"started": 2, "failed": 2},
        "flaky": {"started": 3, "retried": 2, "succeeded": 1},
        "step": {"started": 2, "succeeded": 2, "cache_hits": 2},
        "sleeps": {"started": 1, "cancelled": 1},
    }
    assert {
        short: outcomes(samples, "runs", f"{APP}.{short}")
        for short in ("fails_once_after_two_steps", "waits_on_a_sleeper")
    } == {
        "fails_once_after_two_steps": {"started": 2, "retried": 1, "succeeded": 1},
        "waits_on_a_sleeper": {"started": 1, "cancelled": 1},
    }
    # one observation per job that ended after running: its last attempt
    assert {
        short: durations(samples, "task", f"{APP}.{short}")
        for short in ("succeeds", "fails", "flaky", "step", "sleeps")
    } == {"succeeds": 5, "fails": 2, "flaky": 1, "step": 2, "sleeps": 1}
    assert durations(samples, "run", f"{APP}.fails_once_after_two_steps") == 1
    assert durations(samples, "run", f"{APP}.waits_on_a_sleeper") == 1

    assert value(samples, "coda_queue_depth", queue="parked", kind="task") == 3
    assert value(samples, "coda_queue_depth", queue="default", kind="task") == 0
    live = {
        state: value(samples, "coda_jobs", kind="task", state=state)
        for state in ("queued", "delayed", "running")
    }
    assert live == {"queued": 3, "delayed": 0, "running": 0}
    assert value(samples, "coda_workers") == 2
    assert value(samples, "coda_worker_restarts_total") == 1

    store = supervisor.status()["store"]  # nothing commits while the supervisor idles
    assert value(samples, "coda_store_commit_seconds_count") == store["commits"] > 0
    assert value(samples, "coda_store_commit_failures_total") == 0


def test_with_a_token_a_scrape_must_carry_it() -> None:
    args = ["--http", "127.0.0.1:0", "--token", TOKEN, "--log-level", "WARNING"]
    with SupervisorProcess([APP], workers=0, extra_args=args) as sup:
        url = sup.dashboard_url or ""
        refused = httpx.get(f"{url}metrics", timeout=10)
        assert refused.status_code == 401 and refused.text.startswith("token_required: ")
        samples = scrape(url, headers={"Authorization": f"Bearer {TOKEN}"})
        assert value(samples, "coda_workers") == 0
