"""Workflows end to end: a real supervisor with two real worker processes."""

from __future__ import annotations

import asyncio
import itertools

import pytest

import coda
import coda.testing
from examples.ingest.workflows import process_event
from tests.apps import basic
from tests.apps.journal import lines
from tests.e2e.conftest import executions

pytestmark = pytest.mark.e2e


def test_seed_example(supervisor) -> None:  # type: ignore[no-untyped-def]
    with coda.testing.SupervisorProcess(["examples.ingest.workflows"], workers=1) as sup:
        event = {"event_id": "e1", "Message": "  hi  "}
        result = sup.client().run(
            process_event, args={"project_id": 7, "event_data": event}, timeout=30
        )
    assert result["stored"] is True
    assert result["key"] == "e:7:e1"
    assert result["message"] == "hi"


def test_cached_tasks_are_not_run_again_on_rerun(client, counter) -> None:  # type: ignore[no-untyped-def]
    result = client.run(
        basic.cached_then_fail, args={"path": counter, "fail_attempts": 2}, timeout=30
    )
    assert result == ["A", "B"]
    assert executions(counter, "workflow") == 3  # two failed attempts and the good one
    assert executions(counter, "a") == 1
    assert executions(counter, "b") == 1


def test_uncached_tasks_run_on_every_attempt(client, counter) -> None:  # type: ignore[no-untyped-def]
    assert client.run(basic.uncached_then_fail, args={"path": counter}, timeout=30) == "U"
    assert executions(counter, "u") == 2


def test_gathered_spawns_run_at_the_same_time(client, counter) -> None:  # type: ignore[no-untyped-def]
    """Each of the two tasks (one per worker) waits at a barrier for the other: an
    engine that ran gathered spawns one after another would time the first one out."""
    result = client.run(basic.gather_at_a_barrier, args={"path": counter, "parties": 2}, timeout=30)
    assert result == ["t0", "t1"]
    assert sorted(lines(counter)) == ["t0", "t1"]


def test_gathered_results_come_in_spawn_order(client) -> None:  # type: ignore[no-untyped-def]
    assert client.run(basic.fan_out, args={"n": 20}, timeout=30) == [2 * i for i in range(20)]


def test_sync_and_async_tasks_and_spawn_by_name(client) -> None:  # type: ignore[no-untyped-def]
    assert client.run(basic.mixed_steps, args={"x": 1}, timeout=30) == 4


def test_child_workflows(client) -> None:  # type: ignore[no-untyped-def]
    result = client.run(basic.parent, args={"x": 1}, timeout=30)
    assert result == {"first": 101, "both": [201, 100]}


def test_task_failure_reaches_workflow_as_exception(client) -> None:  # type: ignore[no-untyped-def]
    result = client.run(basic.catches_failure, args={"message": "bad input"}, timeout=30)
    assert result == {"type": "ValueError", "message": "bad input", "has_traceback": "True"}


def test_workflow_failure_reaches_client(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(coda.WorkflowFailed) as info:
        client.run(basic.fails_for_good, timeout=30)
    assert info.value.type_name == "coda.errors.TaskFailed"
    assert "ValueError: no luck" in info.value.message


def test_task_retries_then_succeeds(client, counter) -> None:  # type: ignore[no-untyped-def]
    assert client.run(basic.retries_a_task, args={"path": counter}, timeout=30) == 3
    assert executions(counter, "flaky") == 3


def test_retry_gives_up_after_max_retries(client, counter) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(coda.TaskFailed) as info:
        client.run(basic.flaky, args={"path": counter, "fail_times": 10}, timeout=30)
    assert info.value.type_name == "ConnectionError"
    assert executions(counter, "flaky") == 4  # the first run and max_retries=3 retries


def test_exponential_backoff_spaces_retries(client, counter) -> None:  # type: ignore[no-untyped-def]
    runs = client.run(basic.flaky_backoff, args={"path": counter}, timeout=30)
    gaps = [b - a for a, b in itertools.pairwise(runs)]
    # delays of 0.05, 0.1 and 0.2 s: each gap at least its delay, growing
    assert [round(g, 2) >= d for g, d in zip(gaps, [0.05, 0.1, 0.2], strict=True)] == [True] * 3


def test_non_retryable_exception_fails_at_once(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(coda.TaskFailed) as info:
        client.run(basic.always_fails, args={"message": "direct"}, timeout=30)
    assert info.value.type_name == "ValueError"
    assert "always_fails" in info.value.remote_traceback


def test_tasks_run_on_their_own(client) -> None:  # type: ignore[no-untyped-def]
    assert client.run(basic.add, args={"x": 2, "y": 3}, timeout=30) == 5
    assert client.run("tests.apps.basic.async_add", args={"x": 2, "y": 3}, timeout=30) == 5


def test_submit_and_handle(client, supervisor) -> None:  # type: ignore[no-untyped-def]
    handle = client.submit(basic.add, args={"x": 1, "y": 1})
    assert handle.result(timeout=30) == 2
    with supervisor.client() as other:
        assert other.handle(handle.run_id).result(timeout=30) == 2


def test_async_timeout_fails_the_task(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(coda.TaskFailed) as info:
        client.run(basic.async_too_slow, timeout=30)
    assert info.value.type_name == "TimeoutError"


def test_unknown_name_is_a_clear_error(client) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(coda.UnknownNameError, match="no.such.workflow"):
        client.run("no.such.workflow", timeout=30)
    with pytest.raises(coda.UnknownNameError, match="another.missing"):
        client.submit("another.missing")
    assert "no.such.task" in client.run(basic.spawns_unknown, timeout=30)


def test_result_timeout(client) -> None:  # type: ignore[no-untyped-def]
    handle = client.submit(basic.async_too_slow)
    with pytest.raises(coda.ResultTimeoutError):
        handle.result(timeout=0.05)
    assert client.run(basic.add, args={"x": 1, "y": 2}, timeout=30) == 3  # connection still in sync


def test_async_client(supervisor) -> None:  # type: ignore[no-untyped-def]
    asyncio.run(_async_client_checks(supervisor.address))


async def _async_client_checks(address: str) -> None:
    async with coda.AsyncClient(address) as client:
        results = await asyncio.gather(
            *(client.run(basic.add, args={"x": i, "y": 1}, timeout=30) for i in range(50))
        )
        assert results == [i + 1 for i in range(50)]
        handle = await client.submit(basic.mixed_steps, args={"x": 10})
        assert await client.handle(handle.run_id).result(timeout=30) == 13
        with pytest.raises(coda.WorkflowFailed):
            await client.run(basic.fails_for_good, timeout=30)
        with pytest.raises(coda.UnknownNameError):
            await client.run("nope.nope", timeout=30)
