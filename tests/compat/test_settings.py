"""The settings real Celery apps set, on Coda-run tasks (issue 13, "What must work" 3).

One supervisor adopts ``tests.apps.celery_settings`` (every setting of the
list on at once, as an app in production has them) and every call is routed
to it with ``install()``; results come from the app's Redis backend and
events from its Redis broker, where Flower would read them.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from coda.compat.celery import install, uninstall
from coda.testing import SupervisorProcess, wait_until
from tests.apps import celery_settings as tasks
from tests.apps.celery_settings import lines
from tests.celery_events import EventLog, listening

pytestmark = pytest.mark.e2e

APP = "tests.apps.celery_settings"
TIMEOUT = 30


@pytest.fixture(scope="module")
def supervisor() -> Iterator[SupervisorProcess]:
    args = ["--celery-app", f"{APP}:app", "--queues", "default,settings-routed"]
    with SupervisorProcess([], workers=2, extra_args=[*args, "--log-level", "WARNING"]) as sup:
        wait_until(lambda: len(sup.worker_pids()) == 2, timeout=30, what="2 workers")
        router = install(tasks.app, supervisor=sup.address, rollout={f"{APP}.*": 1.0})
        # Warm both workers up (connections to Redis, tracers): rate-limit
        # tests measure when bodies run, and a first run starts later.
        for result in [tasks.add.delay(i, i) for i in range(6)]:
            result.get(timeout=TIMEOUT)
        try:
            yield sup
        finally:
            router.close()
            uninstall(tasks.app)


@pytest.fixture(scope="module")
def events(supervisor: SupervisorProcess) -> Iterator[EventLog]:
    with listening(tasks.app) as log:
        yield log


def worker_events(events: EventLog, task_id: str) -> list[str]:
    return [kind for kind in events.types_for(task_id) if kind != "task-sent"]


def times(path: str) -> list[float]:
    return [float(line.split()[1]) for line in lines(path) if line.startswith("at ")]


def test_self_retry_with_task_send_sent_event_succeeds(
    supervisor: SupervisorProcess, tmp_path: Path
) -> None:
    """Issue 13: with ``task_send_sent_event`` the captured retry was the
    sent event, the run failed and the result stayed RETRY forever."""
    path = str(tmp_path / "runs")
    result = tasks.retry_once.delay(path)
    assert result.get(timeout=TIMEOUT) == 2
    assert lines(path) == ["run", "run"]
    assert result.state == "SUCCESS"


def test_task_events_reach_the_apps_broker(
    supervisor: SupervisorProcess, events: EventLog, tmp_path: Path
) -> None:
    """What Flower's tasks page reads: sent (by the producer), then received,
    started, and succeeded / failed / retried (by the Coda worker). The
    producer publishes ``task-sent`` after the task, so it may arrive after
    the worker's first events, as with Celery; Flower orders them by clock."""
    ok = tasks.add.delay(2, 3)
    assert ok.get(timeout=TIMEOUT) == 5
    expected = ["task-received", "task-started", "task-succeeded"]
    wait_until(lambda: worker_events(events, ok.id) == expected, what=f"events {expected}")
    wait_until(lambda: "task-sent" in events.types_for(ok.id), what="task-sent")
    received = next(e for e in events.of_kind("task-received") if e["uuid"] == ok.id)
    assert received["name"] == f"{APP}.add" and received["args"] == "(2, 3)"
    assert received["hostname"].startswith("coda-")
    succeeded = next(e for e in events.of_kind("task-succeeded") if e["uuid"] == ok.id)
    assert succeeded["result"] == "5" and succeeded["runtime"] >= 0

    retried = tasks.retry_once.delay(str(tmp_path / "runs"))
    assert retried.get(timeout=TIMEOUT) == 2
    wait_until(lambda: worker_events(events, retried.id)[-1:] == ["task-succeeded"])
    assert worker_events(events, retried.id) == [
        "task-received",
        "task-started",
        "task-retried",
        "task-received",
        "task-started",
        "task-succeeded",
    ]
    # one for the call, one for the retry (published again, as Celery does)
    wait_until(lambda: events.types_for(retried.id).count("task-sent") == 2, what="2 sent")

    failed = tasks.late_fail.delay(str(tmp_path / "fails"))
    with pytest.raises(KeyError):
        failed.get(timeout=TIMEOUT)
    wait_until(lambda: worker_events(events, failed.id)[-1:] == ["task-failed"])
    failure = events.of_kind("task-failed")[-1]
    assert "KeyError" in failure["exception"] and "Traceback" in failure["traceback"]


def test_track_started_shows_started(supervisor: SupervisorProcess, tmp_path: Path) -> None:
    path, release = str(tmp_path / "runs"), tmp_path / "release"
    result = tasks.wait_for.delay(path, str(release))
    wait_until(lambda: result.state == "STARTED", what="STARTED while the task runs")
    assert result.info["hostname"].startswith("coda-") and result.info["pid"] > 0
    release.touch()
    assert result.get(timeout=TIMEOUT) == result.info


def test_result_extended_records_name_args_and_worker(supervisor: SupervisorProcess) -> None:
    result = tasks.add.delay(4, 5)
    assert result.get(timeout=TIMEOUT) == 9
    result = tasks.app.AsyncResult(result.id)
    assert (result.name, result.args, result.kwargs) == (f"{APP}.add", [4, 5], {})
    assert result.worker.startswith("coda-") and result.retries == 0
    assert result.queue == "settings-default"


def test_acks_on_failure_or_timeout_off_fails_once(
    supervisor: SupervisorProcess, tmp_path: Path
) -> None:
    """With ``acks_late`` and ``task_acks_on_failure_or_timeout = False``
    Celery rejects a failed message without requeueing it: FAILURE, once."""
    path = str(tmp_path / "runs")
    result = tasks.late_fail.delay(path)
    with pytest.raises(KeyError, match="for good"):
        result.get(timeout=TIMEOUT)
    # the Coda job has ended failed, and a job that ended never runs again
    counts = lambda: supervisor.status()["names"].get(f"{APP}.late_fail", {})  # noqa: E731
    wait_until(lambda: counts().get("failed") == 1, what="the job to end failed")
    assert lines(path) == ["run"] and result.state == "FAILURE"
    assert counts().get("retried", 0) == 0


def test_reject_on_worker_lost_redelivers_the_task(
    supervisor: SupervisorProcess, tmp_path: Path
) -> None:
    path, release = str(tmp_path / "runs"), tmp_path / "release"
    result = tasks.late_wait.delay(path, str(release))
    line = wait_until(lambda: next(iter(lines(path)), None), what="the task to start")
    os.kill(int(line.split()[1]), signal.SIGKILL)
    wait_until(lambda: len(lines(path)) == 2, what="the redelivery")
    release.touch()
    assert result.get(timeout=TIMEOUT) == {"redelivered": True}


def test_task_routes_and_a_renamed_default_queue(supervisor: SupervisorProcess) -> None:
    assert tasks.routed.delay().get(timeout=TIMEOUT) == "settings-routed"
    assert tasks.add.delay(1, 1).get(timeout=TIMEOUT) == 2  # settings-default: Coda's default
    names = supervisor.status()["names"]
    assert names[f"{APP}.routed"]["succeeded"] >= 1


def assert_spaced(path: str, interval: float) -> None:
    """Three runs a rate limit spaced: the supervisor sends them ``interval``
    apart; a body starts a little after (more on a worker that has just been
    started, with connections to open), so the span is checked at 80% and
    each gap at a third (without the limit they all start within ~0.05 s)."""
    wait_until(lambda: len(times(path)) == 3, what="3 runs")
    started = sorted(times(path))
    gaps = [b - a for a, b in itertools.pairwise(started)]
    assert started[-1] - started[0] >= 0.8 * 2 * interval, gaps
    assert all(gap >= interval / 3 for gap in gaps), gaps


def test_rate_limit_from_annotations_spaces_the_runs(
    supervisor: SupervisorProcess, tmp_path: Path
) -> None:
    """``task_annotations`` sets ``rate_limit="60/m"``: one start a second,
    per supervisor, however many workers it has (Celery: per worker)."""
    path = str(tmp_path / "runs")
    results = [tasks.annotated.delay(path) for _ in range(3)]
    for result in results:
        result.get(timeout=TIMEOUT)
    assert_spaced(path, 1.0)


def test_default_rate_limit_applies_to_every_task(
    supervisor: SupervisorProcess, tmp_path: Path
) -> None:
    """``task_default_rate_limit = "120/m"``: 0.5 s between starts."""
    path = str(tmp_path / "runs")
    results = [tasks.stamp.delay(path) for _ in range(3)]
    for result in results:
        result.get(timeout=TIMEOUT)
    assert_spaced(path, 0.5)


def test_result_expires_is_the_results_time_to_live(supervisor: SupervisorProcess) -> None:
    result = tasks.add.delay(1, 2)
    assert result.get(timeout=TIMEOUT) == 3
    key = tasks.app.backend.get_key_for_task(result.id).decode()
    client = redis.Redis.from_url(tasks.REDIS_URL)
    try:
        ttl = client.ttl(key)  # (the key carries the session's prefix)
    finally:
        client.close()
    assert 0 < ttl <= tasks.RESULT_EXPIRES


def test_concurrency_above_one_is_refused_with_what_to_use() -> None:
    """Celery tasks run one at a time per worker (main thread): ``--concurrency
    4`` used to start and run them one by one while showing ``tasks 0/4``."""
    argv = [sys.executable, "-m", "coda", "supervisor", "--celery-app", f"{APP}:app"]
    argv += ["--concurrency", "4", "--workers", "1", "--listen", "127.0.0.1:0"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "--concurrency 4 with --celery-app" in done.stderr
    assert "use --workers 4 (Celery's -c 4)" in done.stderr


def test_task_always_eager_runs_in_process(supervisor: SupervisorProcess) -> None:
    tasks.app.conf.task_always_eager = True
    try:
        before = supervisor.status()["names"].get(f"{APP}.add", {}).get("succeeded", 0)
        result = tasks.add.delay(20, 22)
        assert result.get() == 42 and type(result).__name__ == "EagerResult"
        after = supervisor.status()["names"].get(f"{APP}.add", {}).get("succeeded", 0)
        assert after == before  # never reached the supervisor
    finally:
        tasks.app.conf.task_always_eager = False
