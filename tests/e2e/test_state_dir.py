"""Where ``coda supervisor`` keeps its state when given no ``--store``: one
per-user folder, named in its start-up line, and nothing in the folder it
was started from."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

STATE_FILES = {"state.sqlite3", "state.sqlite3-wal", "state.sqlite3-shm", "state.sqlite3.lock"}


def start_and_stop(cwd: Path, env: dict[str, str]) -> str:
    """Start a supervisor with no --store in ``cwd``; return its ready line."""
    env = {**os.environ, **env}
    env.pop("CODA_STORE", None)
    argv = [sys.executable, "-m", "coda", "supervisor", "--workers", "0"]
    argv += ["--listen", "127.0.0.1:0"]
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        ready = process.stdout.readline().strip()
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    return ready


def test_state_goes_to_xdg_state_home_and_the_start_up_line_says_where(tmp_path: Path) -> None:
    project, xdg = tmp_path / "project", tmp_path / "xdg"
    project.mkdir()

    ready = start_and_stop(project, {"XDG_STATE_HOME": str(xdg)})

    assert ready.endswith(f"(state: {xdg}/coda/state.sqlite3)"), ready
    assert list(project.iterdir()) == []
    assert {p.name for p in (xdg / "coda").iterdir()} <= STATE_FILES
    assert (xdg / "coda" / "state.sqlite3").is_file()
    assert (xdg / "coda").stat().st_mode & 0o777 == 0o700  # task arguments live there


def test_without_xdg_state_home_state_goes_to_local_state_in_home(tmp_path: Path) -> None:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    env = {"HOME": str(home), "XDG_STATE_HOME": ""}

    ready = start_and_stop(project, env)

    assert ready.endswith(f"(state: {home}/.local/state/coda/state.sqlite3)"), ready
    assert list(project.iterdir()) == []
    assert (home / ".local" / "state" / "coda" / "state.sqlite3").is_file()
