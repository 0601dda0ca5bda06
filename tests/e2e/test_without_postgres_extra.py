"""Without the ``postgres`` extra (psycopg not installed), a supervisor on
SQLite starts, loads the broker extension and runs work: psycopg is imported
only for a ``postgresql://`` store (a fresh ``pip install coda-workflows``
could not start a supervisor when the broker's fleet module imported it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from coda.testing import SupervisorProcess
from tests.apps import basic

pytestmark = pytest.mark.e2e


def without_psycopg(shim_dir: Path) -> dict[str, str]:
    """An environment in which ``import psycopg`` and ``import psycopg_pool``
    fail as they do where the extra is not installed; the supervisor passes
    it on to its workers."""
    for module in ("psycopg", "psycopg_pool"):
        (shim_dir / f"{module}.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{module}'\", name={module!r})\n"
        )
    path = [str(shim_dir), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path))}


def test_a_sqlite_supervisor_runs_work_without_psycopg_installed(tmp_path: Path) -> None:
    with SupervisorProcess(["tests.apps.basic"], workers=1, env=without_psycopg(tmp_path)) as sup:
        assert sup.client().run(basic.add, args={"x": 2, "y": 3}, timeout=30) == 5
        status = sup.client().status()
    assert "broker" in status
