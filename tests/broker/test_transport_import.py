"""``--celery-app`` registers ``coda://`` with kombu in the Coda workers, so an
adopted task can publish through a ``coda://`` broker even when the app's
module never imports ``coda.compat.kombu``."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from coda.testing import SupervisorProcess
from tests.broker.processes import broker_queue

pytestmark = pytest.mark.e2e


def test_an_adopted_task_publishes_to_coda_without_the_import_in_its_app(
    broker: SupervisorProcess,
) -> None:
    queue = f"coda-test-forgot-{uuid.uuid4().hex[:8]}"
    with SupervisorProcess(
        [],
        workers=1,
        extra_args=["--celery-app", "tests.apps.forgot_import:app"],
        env={"CODA_BROKER_URL": f"coda://{broker.address}"},
    ) as coda_side:
        argv = [sys.executable, "-m", "coda", "run", "tests.apps.forgot_import.hand_on"]
        argv += ["--args", json.dumps({"queue": queue}), "--supervisor", coda_side.address]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == '"handed on"'
    assert broker_queue(broker, queue)["ready"] == 1
