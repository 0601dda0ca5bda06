"""The ``coda`` command, run as a real subprocess against a real supervisor."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coda.supervisor import SupervisorConfig
from coda.testing import InProcessSupervisor, SupervisorProcess

pytestmark = pytest.mark.e2e


def coda_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "coda", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_run_prints_the_result_as_json_on_its_last_line(supervisor) -> None:  # type: ignore[no-untyped-def]
    done = coda_cli(
        "run",
        "tests.apps.basic.mixed_steps",
        "--args",
        '{"x": 5}',
        "--supervisor",
        supervisor.address,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == 8


def test_run_reads_the_address_from_the_environment(supervisor) -> None:  # type: ignore[no-untyped-def]
    done = coda_cli(
        "run",
        "tests.apps.basic.add",
        "--args",
        '{"x": 1, "y": 2}',
        env={"CODA_SUPERVISOR": supervisor.address},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "3"


def test_run_reports_failures_and_bad_arguments(supervisor) -> None:  # type: ignore[no-untyped-def]
    failed = coda_cli(
        "run",
        "tests.apps.basic.always_fails",
        "--args",
        '{"message": "nope"}',
        "--supervisor",
        supervisor.address,
    )
    assert failed.returncode == 1
    assert "ValueError: nope" in failed.stderr
    unknown = coda_cli("run", "not.registered", "--supervisor", supervisor.address)
    assert unknown.returncode == 1 and "'not.registered'" in unknown.stderr
    bad = coda_cli(
        "run", "tests.apps.basic.add", "--args", "[1, 2]", "--supervisor", supervisor.address
    )
    assert bad.returncode == 2 and "JSON object" in bad.stderr
    unreachable = coda_cli("run", "x.y", "--supervisor", "127.0.0.1:1")
    assert unreachable.returncode == 1 and "cannot reach" in unreachable.stderr


def test_status_is_readable(supervisor) -> None:  # type: ignore[no-untyped-def]
    coda_cli(
        "run",
        "tests.apps.basic.add",
        "--args",
        '{"x": 1, "y": 2}',
        "--supervisor",
        supervisor.address,
    )
    done = coda_cli("status", "--supervisor", supervisor.address)
    assert done.returncode == 0, done.stderr
    assert "workers:" in done.stdout and "tests.apps.basic.add" in done.stdout
    as_json = json.loads(coda_cli("status", "--json", "--supervisor", supervisor.address).stdout)
    assert len(as_json["workers"]) == 2


def test_supervisor_refuses_bad_configuration() -> None:
    done = coda_cli("supervisor", "--listen", "0.0.0.0:0", "--workers", "0")
    assert done.returncode == 1 and "token" in done.stderr
    done = coda_cli(
        "supervisor", "-A", "no_such_module_xyz", "--workers", "0", "--listen", "127.0.0.1:0"
    )
    assert done.returncode == 1 and "no_such_module_xyz" in done.stderr
    done = coda_cli("supervisor", "--workers", "-1")
    assert done.returncode == 2


def test_unix_socket_listener(tmp_path: Path) -> None:
    path = str(tmp_path / "coda.sock")
    with SupervisorProcess(["tests.apps.basic"], workers=1, extra_args=["--unix", path]) as sup:
        with sup.client() as tcp:
            assert tcp.run("tests.apps.basic.add", args={"x": 1, "y": 1}, timeout=30) == 2
        from coda import Client

        with Client(path) as unix:
            assert unix.run("tests.apps.basic.add", args={"x": 2, "y": 2}, timeout=30) == 4


def test_in_process_supervisor() -> None:
    config = SupervisorConfig(
        modules=("tests.apps.basic",), workers=1, listen="127.0.0.1:0", store="memory://"
    )
    with InProcessSupervisor(config) as sup:
        from coda import Client

        with Client(sup.address) as client:
            assert client.run("tests.apps.basic.fan_out", args={"n": 3}, timeout=30) == [0, 2, 4]


def test_token_is_required_when_set() -> None:
    with SupervisorProcess(
        ["tests.apps.basic"], workers=1, extra_args=["--token", "s3cret"]
    ) as sup:
        from coda import Client, errors

        with pytest.raises(errors.HandshakeError, match="token"), Client(sup.address) as anon:
            anon.status()
        with Client(sup.address, token="s3cret") as client:
            assert client.run("tests.apps.basic.add", args={"x": 1, "y": 1}, timeout=30) == 2
