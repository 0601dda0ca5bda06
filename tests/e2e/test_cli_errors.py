"""What the real ``coda`` command says when something gets in the way: one
line that says what to do, and never a lost run id."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from coda.testing import SupervisorProcess, wait_until
from tests.e2e.conftest import executions
from tests.e2e.test_cli import coda_cli

pytestmark = pytest.mark.e2e


class WaitingRun:
    """``coda run tests.apps.durable.held`` as a subprocess, its stderr read as it comes."""

    def __init__(self, address: str, tmp_path: Path) -> None:
        self.log, self.gate = str(tmp_path / "runs.log"), str(tmp_path / "gate")
        self.args = json.dumps({"path": self.log, "label": "held", "gate": self.gate})
        argv = [sys.executable, "-m", "coda", "run", "tests.apps.durable.held"]
        argv += ["--args", self.args, "--supervisor", address]
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.stderr: list[str] = []
        assert self.process.stderr is not None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        wait_until(lambda: "waiting for its result" in self.err(), what="coda run waiting")
        wait_until(lambda: executions(self.log, "held-start") == 1, what="the task running")

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def err(self) -> str:
        return "".join(self.stderr)

    def finish(self) -> tuple[int, str, str]:
        assert self.process.stdout is not None
        out = self.process.stdout.read()
        code = self.process.wait(30)
        self._reader.join(30)
        return code, out, self.err()


def run_id_of(stderr: str) -> str:
    first = stderr.splitlines()[0]  # "run ID accepted; waiting for its result"
    assert first.startswith("run ") and first.endswith(" accepted; waiting for its result")
    return first.split()[1]


def resume_command(stderr: str) -> list[str]:
    """The ``coda run ... --run-id ID`` the message tells the person to type."""
    line = next(line for line in stderr.splitlines() if "coda run " in line)
    argv = shlex.split(line[line.index("coda run ") :])
    return [sys.executable, "-m", "coda", *argv[1:]]


def test_a_second_supervisor_on_a_taken_port_says_so_in_one_line() -> None:
    with SupervisorProcess([], workers=0) as first:
        done = coda_cli(
            "supervisor", "--workers", "0", "--listen", first.address, "--store", "memory://"
        )
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"Error: cannot listen on {first.address}: the address is already in use "
        "(another supervisor, or another program, holds it); pick another with --listen HOST:PORT"
    )
    assert "Traceback" not in done.stdout + done.stderr


def test_ctrl_c_of_a_waiting_run_names_the_run_and_how_to_get_its_result(
    tmp_path: Path,
) -> None:
    with SupervisorProcess(["tests.apps.durable"], workers=1) as sup:
        waiting = WaitingRun(sup.address, tmp_path)
        waiting.process.send_signal(signal.SIGINT)
        code, out, err = waiting.finish()
        run_id = run_id_of(err)
        assert code == 130 and out == ""
        assert "Aborted" not in err and "Traceback" not in err
        assert f"interrupted: run {run_id} goes on in the supervisor at {sup.address}." in err
        assert f"coda.Client({sup.address!r}).handle({run_id!r}).result()" in err

        Path(waiting.gate).touch()
        resumed = subprocess.run(resume_command(err), capture_output=True, text=True, timeout=60)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.strip() == '"held"'
        assert run_id_of(resumed.stderr) == run_id  # the same run, not a new one
        assert executions(waiting.log, "held") == 1


def test_a_supervisor_lost_during_the_wait_names_the_run(tmp_path: Path) -> None:
    sup = SupervisorProcess(["tests.apps.durable"], workers=1)
    try:
        waiting = WaitingRun(sup.address, tmp_path)
        sup.kill()
        code, out, err = waiting.finish()
    finally:
        sup.close()
    run_id = run_id_of(err)
    assert code == 1 and out == ""
    assert f"while waiting for run {run_id}." in err and "Traceback" not in err
    assert resume_command(err)[-4:] == ["--run-id", run_id, "--supervisor", sup.address]
