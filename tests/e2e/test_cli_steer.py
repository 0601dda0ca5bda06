"""``coda result``, ``runs``, ``show``, ``cancel`` and ``purge``: the real
command, run as a subprocess against a real supervisor and its workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import coda
from coda.testing import SupervisorProcess, wait_until
from tests.apps import steer
from tests.apps.journal import lines
from tests.e2e.test_cli import coda_cli

pytestmark = pytest.mark.e2e

STEP = "tests.apps.steer.step"
NOT_FINISHED = 3


def cli(sup: SupervisorProcess, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coda", *args, "--supervisor", sup.address],
        capture_output=True,
        text=True,
        timeout=60,
        input=stdin,
    )


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    """The error a refused command printed: exactly one line."""
    assert done.stderr.count("\n") == 1, done.stderr
    return done.stderr.strip()


def submitted(sup: SupervisorProcess, name: str, args: dict[str, object]) -> str:
    """Start a run with ``coda run --no-wait``; its id."""
    done = cli(sup, "run", name, "--args", json.dumps(args), "--no-wait")
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_result_prints_a_finished_runs_value_and_says_when_it_has_not_finished(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    finished = submitted(steer_supervisor, STEP, {"journal": journal, "name": "x"})
    wait_until(lambda: cli(steer_supervisor, "result", finished).returncode == 0, what="the step")
    done = cli(steer_supervisor, "result", finished)
    assert json.loads(done.stdout) == "x"

    sleeping = {"journal": journal, "seconds": 60}
    running = submitted(steer_supervisor, "tests.apps.steer.sleeps", sleeping)
    done = cli(steer_supervisor, "result", running)
    assert done.returncode == NOT_FINISHED and done.stdout == ""
    assert f"coda result {running} --wait" in one_line(done)
    done = cli(steer_supervisor, "result", running, "--timeout", "0.3")
    assert done.returncode == NOT_FINISHED
    assert "did not finish within 0.3s; it goes on" in done.stderr

    assert cli(steer_supervisor, "cancel", running).returncode == 0
    done = cli(steer_supervisor, "result", running, "--wait")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == f"Error: run {running} was cancelled"


def test_result_wait_returns_the_value_once_the_run_finishes(
    steer_supervisor: SupervisorProcess, journal: str, tmp_path: Path
) -> None:
    gate = tmp_path / "gate"
    run_id = submitted(
        steer_supervisor, "tests.apps.steer.blocks", {"journal": journal, "gate": str(gate)}
    )
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "coda",
            "result",
            run_id,
            "--wait",
            "--supervisor",
            steer_supervisor.address,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until(lambda: "blocks began" in lines(journal), what="the task to begin")
    assert waiting.poll() is None  # still waiting: the task is blocked on its gate
    gate.touch()
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == "unblocked"


def test_result_of_a_failed_run_prints_its_traceback(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    run_id = submitted(steer_supervisor, "tests.apps.steer.fails_in_a_step", {"journal": journal})
    done = cli(steer_supervisor, "result", run_id, "--wait", "--timeout", "30")
    assert done.returncode == 1
    assert "await coda.context.spawn_task(breaks" in done.stderr  # the workflow's traceback
    assert done.stderr.splitlines()[-1] == (
        "Error: run failed: coda.errors.TaskFailed: ValueError: the step broke"
    )


def test_runs_lists_and_filters_runs_as_a_table_and_as_json(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    with steer_supervisor.client() as client:
        ids = [client.submit(steer.step, {"journal": journal, "name": n}).run_id for n in "pq"]
        for run_id in ids:
            client.handle(run_id).result(timeout=30)
    table = cli(steer_supervisor, "runs", "--name", STEP, "--state", "succeeded", "--since", "10m")
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.strip().splitlines()
    assert header.split()[:4] == ["RUN", "ID", "NAME", "KIND"]
    assert [row.split()[0] for row in rows[:2]] == ids[::-1]  # newest first
    assert all(row.split()[1:4] == [STEP, "task", "succeeded"] for row in rows)

    as_json = cli(steer_supervisor, "runs", "--name", STEP, "--limit", "1", "--json")
    (newest,) = json.loads(as_json.stdout)
    assert (newest["id"], newest["name"], newest["state"]) == (ids[1], STEP, "succeeded")

    future = cli(steer_supervisor, "runs", "--name", STEP, "--since", "2999-01-01")
    assert (future.returncode, future.stdout.strip()) == (0, "no runs match")


def test_show_tells_cached_steps_from_executed_ones_with_keys_and_errors(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    retried = submitted(
        steer_supervisor, "tests.apps.steer.two_steps_then_fails_once", {"journal": journal}
    )
    assert cli(steer_supervisor, "result", retried, "--wait").stdout.strip() == '"ab"'
    done = cli(steer_supervisor, "show", retried)
    assert done.returncode == 0, done.stderr
    assert "succeeded after 2 attempts" in done.stdout
    step_rows = [line.split() for line in done.stdout.splitlines() if STEP in line]
    assert [(row[0], row[2]) for row in step_rows] == [("1", '["a"]'), ("2", '["b"]')]
    assert done.stdout.count("cached (ran in attempt 1)") == 1
    assert done.stdout.count("executed in attempt 2") == 1

    shown = json.loads(cli(steer_supervisor, "show", retried, "--json").stdout)
    assert shown["run"]["attempt"] == 2
    assert [(s["cache_key"], s["cached"]) for s in shown["steps"]] == [
        (["a"], True),
        (["b"], False),
    ]

    failed = submitted(steer_supervisor, "tests.apps.steer.fails_in_a_step", {"journal": journal})
    cli(steer_supervisor, "result", failed, "--wait")
    done = cli(steer_supervisor, "show", failed)
    assert "step 2 (tests.apps.steer.breaks) failed: ValueError: the step broke" in done.stdout
    assert 'raise ValueError("the step broke")' in done.stdout  # its traceback
    shown = json.loads(cli(steer_supervisor, "show", failed, "--json").stdout)
    broken = shown["steps"][1]["failure"]
    assert (broken["type_name"], broken["message"]) == ("ValueError", "the step broke")
    assert 'raise ValueError("the step broke")' in broken["traceback"]
    assert "the run failed: coda.errors.TaskFailed: ValueError: the step broke" in done.stdout


def test_cancel_cancels_a_run_and_terminate_stops_a_running_sync_task(
    steer_supervisor: SupervisorProcess, journal: str, tmp_path: Path
) -> None:
    parked = submitted(steer_supervisor, "tests.apps.steer.parked", {"journal": journal})
    done = cli(steer_supervisor, "cancel", parked)
    assert (done.returncode, done.stdout.strip()) == (0, f"run {parked} cancelled")

    gated = {"journal": journal, "gate": str(tmp_path / "gate")}
    blocked = submitted(steer_supervisor, "tests.apps.steer.blocks", gated)
    wait_until(lambda: "blocks began" in lines(journal), what="the sync task to begin")
    done = cli(steer_supervisor, "cancel", blocked, "--terminate")
    assert (done.returncode, done.stdout.strip()) == (0, f"run {blocked} cancelled")
    with steer_supervisor.client() as client:
        for run_id in (parked, blocked):
            with pytest.raises(coda.Cancelled):
                client.handle(run_id).result(timeout=10)
    listed = cli(steer_supervisor, "runs", "--state", "cancelled", "--json")
    assert {parked, blocked} <= {run["id"] for run in json.loads(listed.stdout)}
    assert "parked ran" not in lines(journal)
    wait_until(lambda: len(steer_supervisor.status()["workers"]) == 2, what="the worker replaced")


def test_purge_asks_first_then_prints_how_many_it_dropped(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    parked = {"journal": journal}
    ids = [submitted(steer_supervisor, "tests.apps.steer.parked", parked) for _ in range(2)]
    declined = cli(steer_supervisor, "purge", "parked", stdin="n\n")
    assert declined.returncode == 1 and "Aborted" in declined.stderr
    assert steer_supervisor.status()["queues"]["parked"]["tasks"] == 2  # nothing changed

    confirmed = cli(steer_supervisor, "purge", "parked", stdin="y\n")
    assert confirmed.returncode == 0, confirmed.stderr
    assert confirmed.stdout.strip().endswith("purged 2 jobs from queue 'parked'")
    forced = cli(steer_supervisor, "purge", "parked", "-f")
    assert forced.stdout.strip() == "no job was waiting in queue 'parked'"
    with steer_supervisor.client() as client:
        for run_id in ids:
            with pytest.raises(coda.Cancelled):
                client.handle(run_id).result(timeout=10)


def test_bad_input_gets_one_line_a_non_zero_status_and_changes_nothing(
    steer_supervisor: SupervisorProcess, journal: str
) -> None:
    finished = submitted(steer_supervisor, STEP, {"journal": journal, "name": "kept"})
    assert cli(steer_supervisor, "result", finished, "--wait").returncode == 0

    done = cli(steer_supervisor, "cancel", finished)
    assert done.returncode == 1
    assert one_line(done) == (
        f"Error: cannot cancel run {finished!r}: it has already succeeded; nothing was changed"
    )
    assert json.loads(cli(steer_supervisor, "result", finished).stdout) == "kept"  # unchanged
    for command in ("cancel", "show", "result"):
        done = cli(steer_supervisor, command, "no-such-run")
        assert done.returncode == 1
        assert "no-such-run" in one_line(done) and "never submitted here" in done.stderr

    since = cli(steer_supervisor, "runs", "--since", "yesterday")
    assert since.returncode == 2 and "'yesterday' is neither a date" in since.stderr
    state = cli(steer_supervisor, "runs", "--state", "done")
    assert state.returncode == 2 and "'done' is not one of" in state.stderr
    limit = cli(steer_supervisor, "runs", "--limit", "0")
    assert limit.returncode == 2 and "--limit" in limit.stderr
    unreachable = coda_cli("runs", "--supervisor", "127.0.0.1:1")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr
    assert os.path.exists(journal) and lines(journal) == ["step kept"]
