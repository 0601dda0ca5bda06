"""The SQLite store across supervisor deaths and restarts, with real processes.

``kill -9`` of the supervisor's process group (its workers die with it, as
they would on a machine crash), a restart on the same store file, and counts
of executions written by the tasks themselves (tests/apps/durable.py).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

import coda
from coda.errors import ConnectionLostError, HandshakeError, RequestRefusedError
from coda.testing import SupervisorProcess, wait_until
from tests.apps import basic, durable
from tests.e2e.conftest import executions

pytestmark = pytest.mark.e2e

APPS = ["tests.apps.durable"]
PIPELINES = 4


def _supervisor(store: str, sock: Path, *extra: str) -> SupervisorProcess:
    """One worker, listening on a Unix socket (the address survives the restart)."""
    return SupervisorProcess(
        APPS, workers=1, listen="none", store=store, extra_args=["--unix", str(sock), *extra]
    )


def test_accepted_work_survives_kill_9_and_restart(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/state.sqlite3"
    sock, log, gate = tmp_path / "coda.sock", str(tmp_path / "runs.log"), str(tmp_path / "gate")
    # Three task slots: the four first steps are queued together and run
    # first (FIFO), then three held steps run and the fourth waits.
    first = _supervisor(store, sock, "--concurrency", "3")
    try:
        client = first.client()
        done_before = client.submit(durable.step, args={"path": log, "label": "early"})
        assert done_before.result(timeout=30) == "early"
        runs = [
            client.submit(durable.pipeline, args={"path": log, "i": i, "gate": gate})
            for i in range(PIPELINES)
        ]
        wait_until(
            lambda: (
                all(executions(log, f"a{i}") for i in range(PIPELINES))
                and sum(executions(log, f"g{i}-start") for i in range(PIPELINES)) == 3
            ),
            what="first steps cached and held steps running",
        )
        queued = client.submit(durable.step, args={"path": log, "label": "queued"})
    finally:
        first.kill()  # not close(): that would close the client too
        assert first.process.stdout is not None
        first.process.stdout.close()

    Path(gate).touch()
    with _supervisor(store, sock, "--concurrency", "3") as second:
        with pytest.raises(ConnectionLostError):  # the old connection is dead...
            client.handle(queued.run_id).result(timeout=30)
        assert client.handle(queued.run_id).result(timeout=60) == "queued"  # ...then reconnects
        for i, run in enumerate(runs):
            assert client.handle(run.run_id).result(timeout=60) == [f"a{i}", f"g{i}", f"b{i}"]
        assert client.handle(done_before.run_id).result(timeout=10) == "early"
        hits = second.status()["names"][durable.step.spec.name]["cache_hits"]

    for i in range(PIPELINES):
        assert executions(log, f"a{i}") == 1  # cached before the crash: served from the store
        assert executions(log, f"b{i}") == 1
        assert executions(log, f"g{i}") == 1  # a held step completes once (reruns attach to it)
    # the three leases of the dead generation ran again, the queued one once
    assert sum(executions(log, f"g{i}-start") for i in range(PIPELINES)) == 3 + PIPELINES
    assert executions(log, "early") == 1
    assert executions(log, "queued") == 1
    assert hits >= PIPELINES


def test_sigterm_drains_the_running_task_then_exits_0(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/state.sqlite3"
    sock, log, gate = tmp_path / "coda.sock", str(tmp_path / "runs.log"), str(tmp_path / "gate")
    sup = _supervisor(store, sock, "--shutdown-grace", "60")
    try:
        waiting, other = sup.client(), sup.client()
        other.status()  # connected before the shutdown begins
        outcome: list[object] = []
        runner = threading.Thread(
            target=lambda: outcome.append(
                waiting.run(
                    durable.held, args={"path": log, "label": "h", "gate": gate}, timeout=60
                )
            )
        )
        runner.start()
        wait_until(lambda: executions(log, "h-start") == 1, what="the held task to start")
        behind = other.submit(durable.step, args={"path": log, "label": "behind"})

        sup.process.send_signal(signal.SIGTERM)
        refused = wait_until(lambda: _refusal(other), what="submits to be refused")
        assert refused.code == "shutting_down"
        with pytest.raises(HandshakeError, match="shutting down"):
            coda.Client(str(sock)).status()
        assert sup.process.poll() is None  # still waiting for the running task

        Path(gate).touch()
        runner.join(60)
        assert outcome == ["h"]  # answered during the drain
        assert sup.process.wait(60) == 0
    finally:
        sup.close()

    with _supervisor(store, sock) as again:
        client = again.client()
        assert client.handle(behind.run_id).result(timeout=60) == "behind"  # kept, then run
    assert executions(log, "h") == 1 and executions(log, "h-start") == 1
    assert executions(log, "behind") == 1


def _refusal(client: coda.Client) -> RequestRefusedError | None:
    try:
        client.submit(basic.noop)
    except RequestRefusedError as exc:
        return exc
    return None


@pytest.mark.parametrize("store", ["sqlite", "memory://"])
def test_finished_runs_expire_after_the_ttl(store: str, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/state.sqlite3" if store == "sqlite" else store
    log = str(tmp_path / "runs.log")
    gate = tmp_path / "gate"
    gate.touch()
    with SupervisorProcess(APPS, store=url, extra_args=["--result-ttl", "1"]) as sup:
        client = sup.client()
        run = client.submit(durable.pipeline, args={"path": log, "i": 0, "gate": str(gate)})
        assert run.result(timeout=30) == ["a0", "g0", "b0"]
        task = client.submit(durable.step, args={"path": log, "label": "t"})
        assert task.result(timeout=30) == "t"
        wait_until(
            lambda: (s := sup.status()["store"])["jobs"] == 0 and s["cache_entries"] == 0,
            timeout=15,
            what="finished runs to expire",
        )
        for handle in (run, task):
            with pytest.raises(RequestRefusedError) as info:
                handle.result(timeout=5)
            assert info.value.code == "not_found"
