"""One source for the supervisor's defaults: ``SupervisorConfig()`` is what
``coda supervisor`` runs with when given no options."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coda import cli
from coda.supervisor import SupervisorConfig
from coda.supervisor.state_dir import default_store_url, state_dir


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("CODA_STORE", "CODA_TOKEN", "CODA_LOG_LEVEL", "XDG_STATE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))  # the command prepends its cwd
    return tmp_path


def test_coda_supervisor_without_options_runs_the_default_config(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[SupervisorConfig] = []

    class Recorder:
        def __init__(self, config: SupervisorConfig) -> None:
            seen.append(config)

        def run(self) -> None:
            pass

    monkeypatch.setattr("coda.supervisor.Supervisor", Recorder)

    result = CliRunner().invoke(cli.main, ["supervisor"])

    assert result.exit_code == 0, result.output
    assert seen == [SupervisorConfig()]
    assert seen[0].store == f"sqlite:///{clean_env}/.local/state/coda/state.sqlite3"


@pytest.mark.parametrize(
    ("xdg", "expected"),
    [
        ("/srv/state", "/srv/state/coda"),
        ("", "{home}/.local/state/coda"),
        ("relative/state", "{home}/.local/state/coda"),  # the spec: ignore a relative value
    ],
)
def test_state_dir_follows_xdg_state_home(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, xdg: str, expected: str
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", xdg)
    assert state_dir() == Path(expected.format(home=clean_env))
    assert default_store_url() == f"sqlite:///{expected.format(home=clean_env)}/state.sqlite3"


def test_the_default_store_is_read_when_the_config_is_made(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/first")
    first = SupervisorConfig().store
    monkeypatch.setenv("XDG_STATE_HOME", "/second")
    assert (first, SupervisorConfig().store) == (
        "sqlite:////first/coda/state.sqlite3",
        "sqlite:////second/coda/state.sqlite3",
    )
