"""Cancel, list, show and purge runs, with real supervisors and workers."""

from __future__ import annotations

from pathlib import Path

import pytest

import coda
from coda.errors import RequestRefusedError
from coda.testing import SupervisorProcess, wait_until
from tests.apps import steer
from tests.apps.journal import lines

pytestmark = pytest.mark.e2e


def settled(sup: SupervisorProcess) -> bool:
    return sup.status()["jobs_in_flight"] == 0


def test_cancelling_a_workflow_cancels_its_await_runs_its_finally_and_stops_its_task(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        handle = client.submit(steer.cancellable, {"journal": journal})
        wait_until(lambda: "sleeps began" in lines(journal), what="the spawned task to begin")
        assert client.cancel(handle.run_id) == "cancelling"
        with pytest.raises(coda.Cancelled):
            handle.result(timeout=30)
        wait_until(lambda: settled(steer_supervisor), what="nothing left in flight")
        # (the task may run on the other worker: the two stop in either order)
        assert sorted(lines(journal)) == [
            "sleeps began",
            "sleeps cancelled",
            "workflow began",
            "workflow finally",
        ]  # and no second "workflow began": a cancelled run is never rerun
        (run,) = client.runs(name="tests.apps.steer.cancellable", limit=1)
        assert run.id == handle.run_id and run.state == "cancelled"


def test_a_queued_task_is_cancelled_before_it_runs(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        handle = client.submit(steer.parked, {"journal": journal})  # nobody consumes "parked"
        assert client.cancel(handle.run_id) == "cancelled"
        with pytest.raises(coda.Cancelled):
            handle.result(timeout=10)
        assert lines(journal) == []


def test_terminate_stops_a_running_sync_task_by_replacing_its_worker(
    steer_supervisor: SupervisorProcess, journal: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    with steer_supervisor.client() as client:
        restarts = client.status()["supervisor"]["worker_restarts"]
        handle = client.submit(steer.blocks, {"journal": journal, "gate": str(gate)})
        wait_until(lambda: "blocks began" in lines(journal), what="the sync task to begin")
        assert client.cancel(handle.run_id, terminate=True) == "cancelled"
        with pytest.raises(coda.Cancelled):
            handle.result(timeout=10)
        wait_until(
            lambda: client.status()["supervisor"]["worker_restarts"] == restarts + 1,
            what="its worker replaced",
        )
        wait_until(lambda: len(client.status()["workers"]) == 2, what="two workers again")
        gate.touch()  # had the task lived on, it would end now
        assert client.run(steer.step, {"journal": journal, "name": "after"}, timeout=30) == "after"
        assert "blocks ended" not in lines(journal)


def test_cancel_refuses_a_finished_or_unknown_run_and_changes_nothing(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        handle = client.submit(steer.step, {"journal": journal, "name": "x"})
        assert handle.result(timeout=30) == "x"
        with pytest.raises(RequestRefusedError, match="already succeeded; nothing was changed"):
            client.cancel(handle.run_id)
        with pytest.raises(RequestRefusedError, match="never submitted here"):
            client.cancel("no-such-run")
        assert handle.result(timeout=5) == "x"


def test_show_tells_cached_steps_from_executed_ones(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        handle = client.submit(steer.two_steps_then_fails_once, {"journal": journal})
        assert handle.result(timeout=30) == "ab"
        run, steps = client.show(handle.run_id)
        assert (run.state, run.attempt) == ("succeeded", 2)
        assert [(s.name.rsplit(".", 1)[-1], s.parent_attempt, s.state) for s in steps] == [
            ("step", 1, "succeeded"),  # run in attempt 1, answered from cache in attempt 2
            ("step", 2, "succeeded"),
        ]
        assert lines(journal) == ["step a", "step b"]


def test_runs_filters_and_refuses_a_bad_filter(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        for name in "pq":
            client.run(steer.step, {"journal": journal, "name": name}, timeout=30)
        recent = client.runs(name="tests.apps.steer.step", state="succeeded", limit=2)
        assert [r.state for r in recent] == ["succeeded", "succeeded"]
        assert recent[0].created_at >= recent[1].created_at
        with pytest.raises(RequestRefusedError, match="unknown state 'done'"):
            client.runs(state="done")
        with pytest.raises(RequestRefusedError, match="limit must be between"):
            client.runs(limit=0)
        with pytest.raises(RequestRefusedError, match="no run 'nope'"):
            client.show("nope")


def test_purge_drops_the_jobs_waiting_in_a_queue(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        handles = [client.submit(steer.parked, {"journal": journal}) for _ in range(3)]
        assert client.purge("parked") == 3
        for handle in handles:
            with pytest.raises(coda.Cancelled):
                handle.result(timeout=10)
        assert client.purge("parked") == 0
