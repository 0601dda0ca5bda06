"""Values above the frame limit are refused where they are made, saying the
limit and the option that raises it: a client's arguments before they
leave, a workflow's spawn where it spawns, a result by failing its task or
workflow once (never rerun: the same value would be too large again)."""

from __future__ import annotations

from pathlib import Path

import pytest

import coda
from coda.messages import Payload, Submit
from coda.protocol import encode_message
from coda.testing import SupervisorProcess
from tests.apps import sizes
from tests.apps.journal import lines
from tests.e2e.rawpeer import connect, read_messages

pytestmark = pytest.mark.e2e

MB = 1000 * 1000
DEFAULT_LIMIT = "67,108,864"  # 64 MiB
OPTION = "coda supervisor --frame-limit"


def test_an_argument_above_the_default_limit_is_refused_by_the_client() -> None:
    with SupervisorProcess(["tests.apps.sizes"], workers=1) as sup:
        client = sup.client()
        with pytest.raises(coda.errors.ValueTooLargeError) as refused:
            client.submit(sizes.length, args={"blob": b"x" * (70 * MB)})
        message = str(refused.value)
        assert message.startswith("the arguments of 'tests.apps.sizes.length' would take 70,0")
        assert DEFAULT_LIMIT in message and OPTION in message
        assert client.run(sizes.length, args={"blob": b"ok"}, timeout=30) == 2  # still connected
        assert "tests.apps.sizes.length" in sup.status()["names"]  # only the second one came


def test_a_result_above_the_default_limit_fails_its_task_once(tmp_path: Path) -> None:
    journal = str(tmp_path / "runs.log")
    with SupervisorProcess(["tests.apps.sizes"], workers=1) as sup:
        client = sup.client()
        with pytest.raises(coda.TaskFailed) as failed:
            client.run(sizes.make_blob, args={"size": 70 * MB, "path": journal}, timeout=120)
        assert failed.value.type_name == "coda.errors.ValueTooLargeError"
        assert failed.value.message.startswith(
            "the result of task 'tests.apps.sizes.make_blob' would take 70,0"
        )
        assert DEFAULT_LIMIT in failed.value.message and OPTION in failed.value.message
        assert lines(journal) == ["make_blob"]  # ran once: finished, so never again
        assert sup.status()["supervisor"]["worker_restarts"] == 0  # its worker was not dropped


def test_values_above_a_lowered_limit_are_refused_where_they_are_made(tmp_path: Path) -> None:
    spawns, results = str(tmp_path / "spawns.log"), str(tmp_path / "results.log")
    limit = ["--frame-limit", "1000000"]
    with SupervisorProcess(["tests.apps.sizes"], workers=1, extra_args=limit) as sup:
        client = sup.client()
        with pytest.raises(coda.errors.ValueTooLargeError, match="limit of 1,000,000 bytes"):
            client.submit(sizes.length, args={"blob": b"x" * (2 * MB)})
        said = client.run(sizes.spawn_with, args={"size": 2 * MB, "path": spawns}, timeout=30)
        assert said.startswith(
            "ValueTooLargeError: the arguments of 'tests.apps.sizes.length' would take 2,0"
        )
        with pytest.raises(coda.TaskFailed, match="limit of 1,000,000 bytes"):
            client.run(sizes.make_blob, args={"size": 2 * MB, "path": results}, timeout=30)
        with pytest.raises(coda.WorkflowFailed, match="limit of 1,000,000 bytes") as failed:
            client.run(sizes.large_result, args={"size": 2 * MB, "path": results}, timeout=30)
        assert failed.value.type_name == "coda.errors.ValueTooLargeError"
        assert lines(results) == ["make_blob", "large_result"]  # max_retries=2: not rerun
        assert client.run(sizes.length, args={"blob": b"x" * 900_000}, timeout=30) == 900_000


def test_a_client_that_does_not_check_is_refused_by_the_supervisor() -> None:
    """An older client, which does not know the limit, is told it too."""
    with SupervisorProcess(
        ["tests.apps.sizes"], workers=1, extra_args=["--frame-limit", "100000"]
    ) as sup:
        sock = connect(sup.address)
        body = memoryview(bytes(150_000))  # above the limit, within the envelope allowance
        submit = Submit(
            req_id=7,
            name="tests.apps.sizes.length",
            args=Payload("application/x-msgpack", "binary", body),
        )
        sock.sendall(encode_message(submit))
        (refusal,) = read_messages(sock)
        assert refusal.code == "too_large" and refusal.req_id == 7
        assert "limit of 100,000 bytes" in refusal.message and OPTION in refusal.message
        sock.close()


def test_a_raised_limit_carries_larger_values_both_ways() -> None:
    """Workers and clients learn the limit: a 70 MB value goes to the task
    and comes back as its result."""
    blob = b"x" * (70 * MB)
    with SupervisorProcess(
        ["tests.apps.sizes"], workers=1, extra_args=["--frame-limit", str(80 * MB)]
    ) as sup:
        assert sup.client().run(sizes.echo, args={"blob": blob}, timeout=120) == blob
