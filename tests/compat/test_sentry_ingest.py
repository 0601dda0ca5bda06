"""The worked port of ``examples/sentry_ingest`` (issue 3, item 7): the Celery
chain on a real Celery worker and Redis, then the Coda workflow surviving a
worker killed mid-chain with the event neither lost nor saved twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from coda.testing import SupervisorProcess, wait_until
from tests.compat.conftest import ROOT

pytestmark = pytest.mark.e2e

PROJECT = 7


@pytest.fixture
def ingest_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "INGEST_DB": str(tmp_path / "events.sqlite3"),
        "INGEST_STATE_DIR": str(tmp_path),
        "INGEST_REDIS_URL": os.environ["CODA_TEST_REDIS_URL"],
        "INGEST_KEY_PREFIX": os.environ["CODA_TEST_CELERY_PREFIX"] + "ingest:",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def new_event(failures: int = 1) -> dict[str, object]:
    return {
        "event_id": uuid.uuid4().hex,
        "Message": "  Disk   almost full ",
        "Level": "WARNING",
        "frames": [{"addr": "0x1f00"}],
        "symbolicator_failures": failures,
    }


def step_counts(state: str, event_id: str) -> Counter[str]:
    log = Path(state) / "steps.log"
    runs = log.read_text().splitlines() if log.exists() else []
    return Counter(line.split()[0] for line in runs if line.endswith(event_id))


@pytest.fixture
def before_worker(ingest_env: dict[str, str], tmp_path: Path) -> Iterator[None]:
    argv = [sys.executable, "-m", "celery", "-A", "examples.sentry_ingest.before", "worker"]
    argv += ["-P", "prefork", "-c", "2", "--without-gossip", "--without-mingle"]
    argv += ["--without-heartbeat", "-l", "WARNING", "-n", f"ingest-{uuid.uuid4().hex[:6]}@%h"]
    with open(tmp_path / "celery.log", "wb") as log:
        worker = subprocess.Popen(
            argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()


def test_before_celery_chain_through_redis_keys(
    ingest_env: dict[str, str], before_worker: None
) -> None:
    from examples.sentry_ingest import before, steps

    event = new_event()
    event_id = str(event["event_id"])
    assert before.ingest(PROJECT, event).get(timeout=60) == event_id
    (stored,) = steps.saved(PROJECT, event_id)
    assert stored["message"] == "Disk almost full" and stored["symbolicated"] is True
    counts = step_counts(ingest_env["INGEST_STATE_DIR"], event_id)
    assert counts == {"preprocess": 1, "symbolicate": 2, "process": 1, "save": 1}
    assert before._redis.exists(before.event_key(PROJECT, event_id)) == 0  # cleaned up


def test_after_workflow_survives_a_worker_killed_mid_chain(ingest_env: dict[str, str]) -> None:
    from examples.sentry_ingest import steps
    from examples.sentry_ingest.after import ingest_event

    state = Path(ingest_env["INGEST_STATE_DIR"])
    hold = state / "hold-process"
    hold.touch()  # the process step stops at its fault-injection point
    event = new_event()
    event_id = str(event["event_id"])
    with SupervisorProcess(
        ["examples.sentry_ingest.after"], workers=2, extra_args=["--log-level", "ERROR"]
    ) as sup:
        handle = sup.client().submit(ingest_event, {"project_id": PROJECT, "event_data": event})
        pid_file = state / "process.pid"
        doomed = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(), timeout=30))
        os.kill(doomed, signal.SIGKILL)  # mid-chain: two steps done, two to go
        hold.unlink()
        assert handle.result(timeout=60) == event_id
    (stored,) = steps.saved(PROJECT, event_id)  # neither lost nor saved twice
    assert stored["fingerprint"] and stored["symbolicated"] is True
    counts = step_counts(str(state), event_id)
    assert counts["preprocess"] == 1 and counts["symbolicate"] == 2  # cached, not rerun
    assert counts["process"] == 2 and counts["save"] == 1  # only the killed step ran again
