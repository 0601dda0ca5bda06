"""A worker without uvloop runs on asyncio's loop, and the tracebacks it
reports do not drag along the ImportError of that fallback (issue 12.3)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import coda
from coda.testing import SupervisorProcess
from tests.apps import basic

pytestmark = pytest.mark.e2e


def without_uvloop(shim_dir: Path) -> dict[str, str]:
    """An environment in which ``import uvloop`` fails, as where it is not
    installed (here it is): first on the path, a ``uvloop`` module that
    raises what a missing one would. The supervisor passes the environment
    on to its workers."""
    (shim_dir / "uvloop.py").write_text(
        'raise ModuleNotFoundError("No module named \'uvloop\'", name="uvloop")\n'
    )
    path = [str(shim_dir), os.environ.get("PYTHONPATH", "")]
    return {"PYTHONPATH": os.pathsep.join(filter(None, path))}


def test_a_workflow_failure_traceback_does_not_mention_the_missing_uvloop(
    tmp_path: Path,
) -> None:
    with SupervisorProcess(["tests.apps.basic"], workers=1, env=without_uvloop(tmp_path)) as sup:
        client = sup.client()
        assert client.run(basic.event_loop_module, timeout=30).startswith("asyncio.")
        with pytest.raises(coda.WorkflowFailed) as info:
            client.run(basic.raises_in_workflow, args={"message": "its own"}, timeout=30)
    traceback = info.value.remote_traceback
    assert traceback.endswith("ValueError: its own\n")  # the workflow's own traceback
    assert "uvloop" not in traceback
    assert "During handling of the above exception" not in traceback
