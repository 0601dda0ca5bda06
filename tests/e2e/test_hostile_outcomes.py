"""Whatever user code raises or returns, the caller gets an answer and the
task slot is freed (issue 11.2), with real processes: one worker with one
task slot, so a slot that leaked would stop every later task."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import coda
from coda.testing import SupervisorProcess, wait_until
from tests.apps import basic, hostile

pytestmark = pytest.mark.e2e

ANSWER_WITHIN = 20.0  # a trivial task answers in well under a second; a lost answer never does

TYPE_NAMES = {
    "unprintable": "tests.apps.hostile.UnprintableError",
    "nameless": "tests.apps.hostile.NamelessError",
    "broken_notes": "tests.apps.hostile.BrokenNotesError",
    "classless": "tests.apps.hostile.ClasslessError",
    "SystemExit": "SystemExit",
    "KeyboardInterrupt": "KeyboardInterrupt",
    "GeneratorExit": "GeneratorExit",
    "CancelledError": "asyncio.exceptions.CancelledError",
}


@pytest.fixture(scope="module")
def one_slot() -> Iterator[SupervisorProcess]:
    modules = ["tests.apps.basic", "tests.apps.hostile"]
    with SupervisorProcess(modules, workers=1, extra_args=["--concurrency", "1"]) as sup:
        wait_until(lambda: len(sup.status()["workers"]) == 1, what="the worker")
        yield sup


def the_worker(sup: SupervisorProcess) -> tuple[int, int]:
    """The one worker's pid (once it is connected) and the restarts so far."""
    (pid,) = wait_until(lambda: (pids := sup.worker_pids()) and len(pids) == 1 and pids)
    return pid, sup.status()["supervisor"]["worker_restarts"]


def assert_same_worker_takes_the_next_task(sup: SupervisorProcess, before: tuple[int, int]) -> None:
    with sup.client() as client:
        assert client.run(basic.add, args={"x": 2, "y": 3}, timeout=ANSWER_WITHIN) == 5
    assert the_worker(sup) == before


def run_and_expect_failure(
    sup: SupervisorProcess, target: object, args: dict[str, object]
) -> coda.RemoteError:
    with sup.client() as client, pytest.raises(coda.RemoteError) as info:
        client.run(target, args=args, timeout=ANSWER_WITHIN)
    return info.value


@pytest.mark.parametrize("kind", sorted(TYPE_NAMES))
def test_a_sync_task_raising_anything_is_answered_and_frees_its_slot(
    one_slot: SupervisorProcess, kind: str
) -> None:
    before = the_worker(one_slot)
    error = run_and_expect_failure(one_slot, hostile.raises, {"kind": kind})
    assert isinstance(error, coda.TaskFailed)
    assert error.type_name == TYPE_NAMES[kind]
    assert "test_hostile" not in error.remote_traceback  # the worker's frames, not ours
    assert "hostile.py" in error.remote_traceback
    assert_same_worker_takes_the_next_task(one_slot, before)


@pytest.mark.parametrize("task", [hostile.async_raises, hostile.async_raises_with_timeout])
@pytest.mark.parametrize(
    "kind", ["SystemExit", "KeyboardInterrupt", "GeneratorExit", "CancelledError", "unprintable"]
)
def test_an_async_task_raising_anything_is_answered_and_frees_its_slot(
    one_slot: SupervisorProcess, task: object, kind: str
) -> None:
    before = the_worker(one_slot)
    error = run_and_expect_failure(one_slot, task, {"kind": kind})
    assert isinstance(error, coda.TaskFailed)
    assert error.type_name == TYPE_NAMES[kind]
    assert_same_worker_takes_the_next_task(one_slot, before)


def test_unprintable_exception_is_described_not_lost(one_slot: SupervisorProcess) -> None:
    the_worker(one_slot)
    error = run_and_expect_failure(one_slot, hostile.raises, {"kind": "unprintable"})
    assert error.message.startswith("<exception str() failed: RuntimeError")
    assert "this exception cannot be printed" in error.message


@pytest.mark.parametrize(
    ("task", "type_name"),
    [
        (hostile.returns_unencodable, "coda.errors.EncodeError"),
        (hostile.returns_result_whose_encoding_exits, "SystemExit"),
    ],
)
def test_a_result_that_cannot_be_encoded_is_answered_as_a_failure(
    one_slot: SupervisorProcess, task: object, type_name: str
) -> None:
    before = the_worker(one_slot)
    error = run_and_expect_failure(one_slot, task, {})
    assert isinstance(error, coda.TaskFailed)
    assert error.type_name == type_name
    assert_same_worker_takes_the_next_task(one_slot, before)


@pytest.mark.parametrize("kind", sorted(TYPE_NAMES))
def test_a_workflow_raising_anything_is_answered(one_slot: SupervisorProcess, kind: str) -> None:
    before = the_worker(one_slot)
    error = run_and_expect_failure(one_slot, hostile.workflow_raises, {"kind": kind})
    assert isinstance(error, coda.WorkflowFailed)
    assert error.type_name == TYPE_NAMES[kind]
    assert_same_worker_takes_the_next_task(one_slot, before)


def test_a_workflow_result_that_cannot_be_encoded_is_answered(
    one_slot: SupervisorProcess,
) -> None:
    before = the_worker(one_slot)
    error = run_and_expect_failure(one_slot, hostile.workflow_returns_unencodable, {})
    assert isinstance(error, coda.WorkflowFailed)
    assert error.type_name == "coda.errors.EncodeError"
    assert_same_worker_takes_the_next_task(one_slot, before)
