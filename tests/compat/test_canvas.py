"""Canvases of Coda-routed tasks run as one Coda workflow, with Celery's results
(issue 3, item 4). Each canvas runs twice: on the Celery worker alone, then
routed to Coda; the answers must be the same."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from celery import chain, chord, group
from celery.exceptions import ChordError
from celery.result import AsyncResult, GroupResult

from coda.compat.celery import uninstall
from coda.testing import SupervisorProcess, wait_until
from tests.apps import celery_app as tasks
from tests.apps.celery_app import lines
from tests.apps.celery_workflows import add_then_double
from tests.compat.conftest import Route

pytestmark = pytest.mark.e2e

ALL = {"tests.apps.celery_app.*": 1.0}
CANVAS = "coda.compat.celery.canvas"

CANVASES: dict[str, Callable[[], Any]] = {
    "chain": lambda: chain(tasks.add.s(1, 2), tasks.add.s(3), tasks.mul.s(10)),
    "immutable step": lambda: chain(tasks.add.s(1, 2), tasks.add.si(5, 5), tasks.add.s(1)),
    "group": lambda: group(tasks.add.s(i, i) for i in range(4)),
    "nested group": lambda: group(tasks.add.s(1, 1), group(tasks.add.s(2, 2), tasks.mul.s(3, 3))),
    "chord in order": lambda: chord([tasks.add.s(i, 0) for i in range(5)], tasks.collect.s()),
    "chain into chord": lambda: chain(
        tasks.add.s(1, 1), group(tasks.add.s(1), tasks.mul.s(10)), tasks.tsum.s()
    ),
    "chord with chain body": lambda: chord(
        [tasks.add.s(1, 1), chain(tasks.add.s(2, 2), tasks.mul.s(3))],
        chain(tasks.tsum.s(), tasks.add.s(100)),
    ),
    "pipe syntax": lambda: tasks.add.s(2, 2) | tasks.mul.s(5) | tasks.add.s(1),
}


def celery_answer(make: Callable[[], Any], args: tuple[Any, ...] = ()) -> Any:
    uninstall(tasks.app)
    return make().apply_async(args).get(timeout=30)


def coda_answer(
    route: Route, sup: SupervisorProcess, make: Callable[[], Any], args: tuple[Any, ...] = ()
) -> Any:
    router = route(ALL)
    before = canvases_run(sup)
    result = make().apply_async(args)
    assert router.sent_to_coda == 1  # one workflow, not one message per leaf
    value = result.get(timeout=30)
    wait_until(lambda: canvases_run(sup) == before + 1, timeout=10, what="the canvas workflow")
    return value


def canvases_run(sup: SupervisorProcess) -> int:
    counts = sup.status()["names"].get(CANVAS, {})
    return int(counts.get("succeeded", 0)) + int(counts.get("failed", 0))


@pytest.mark.parametrize("name", sorted(CANVASES))
def test_canvas_results_equal_celerys(
    name: str, route: Route, coda_supervisor: SupervisorProcess, celery_worker: object
) -> None:
    make = CANVASES[name]
    assert coda_answer(route, coda_supervisor, make) == celery_answer(make)


def test_partial_args_and_result_types(
    route: Route, coda_supervisor: SupervisorProcess, celery_worker: object
) -> None:
    def make() -> Any:
        return chain(tasks.add.s(1), tasks.add.s(2))

    assert coda_answer(route, coda_supervisor, make, (10,)) == celery_answer(make, (10,)) == 13
    route(ALL)
    result = chain(tasks.add.s(1, 1), tasks.add.s(1), tasks.add.s(1)).apply_async()
    assert isinstance(result, AsyncResult) and result.get(timeout=30) == 4
    assert result.parent.get(timeout=30) == 3 and result.parent.parent.get(timeout=30) == 2
    grouped = group(tasks.add.s(1, 1), tasks.add.s(2, 2)).apply_async()
    assert isinstance(grouped, GroupResult) and grouped.get(timeout=30) == [2, 4]
    chosen = chain(tasks.add.s(1, 1), tasks.add.s(1)).apply_async(task_id="chain-id-x")
    assert chosen.id == "chain-id-x" and chosen.get(timeout=30) == 3


def test_failed_chain_step_fails_the_rest_with_the_original_exception(
    route: Route, celery_worker: object
) -> None:
    def make() -> Any:
        return chain(tasks.add.s(1, 1), tasks.fail.si("boom"), tasks.add.s(1))

    uninstall(tasks.app)
    on_celery = make().apply_async()
    route(ALL)
    on_coda = make().apply_async()
    for result in (on_celery, on_coda):
        last = AsyncResult(result.id, app=tasks.app)  # its own stored state, not a parent's
        with pytest.raises(ValueError, match="boom"):
            last.get(timeout=30)
        assert last.state == "FAILURE"
        assert result.parent.parent.get(timeout=30) == 2


def test_a_step_that_failed_for_good_runs_once_as_in_a_chain(
    route: Route, coda_supervisor: SupervisorProcess, log_path: str
) -> None:
    """Issue 13 item 4: a Celery chain runs a failing step once; the canvas
    workflow must not rerun it (nor itself) after the failure."""
    route(ALL)
    before = coda_supervisor.status()["names"].get(CANVAS, {})
    result = chain(
        tasks.add.s(1, 1), tasks.hooked.si(path=log_path, mode="fail"), tasks.add.s(1)
    ).apply_async()
    with pytest.raises(KeyError):
        AsyncResult(result.id, app=tasks.app).get(timeout=30)
    wait_until(
        lambda: canvas_counts(coda_supervisor).get("failed", 0) == before.get("failed", 0) + 1,
        what="the canvas workflow to fail",
    )
    assert canvas_counts(coda_supervisor).get("retried", 0) == before.get("retried", 0)
    assert lines(log_path) == ["on_failure KeyError"]  # the step ran once


def canvas_counts(sup: SupervisorProcess) -> dict[str, int]:
    counts: dict[str, int] = sup.status()["names"].get(CANVAS, {})
    return counts


def test_chord_header_failure_skips_the_body_with_chord_error(
    route: Route, celery_worker: object
) -> None:
    def make() -> Any:
        return chord([tasks.add.s(1, 1), tasks.fail.si("bad member")], tasks.tsum.s())

    uninstall(tasks.app)
    on_celery = make().apply_async()
    route(ALL)
    on_coda = make().apply_async()
    for result in (on_celery, on_coda):
        body = AsyncResult(result.id, app=tasks.app)  # without parents: get() would raise
        with pytest.raises(ChordError) as info:  # the failed member's error if it is done
            body.get(timeout=30)
        culprit = result.parent.results[1].id
        assert str(info.value) == f"Dependency {culprit} raised ValueError('bad member')"
        assert result.state == "FAILURE"


def test_canvas_with_a_task_not_rolled_out_is_left_to_celery(
    route: Route, celery_worker: object
) -> None:
    router = route({tasks.add.name: 1.0})  # mul stays on Celery
    result = chain(tasks.add.s(1, 2), tasks.mul.s(10)).apply_async()
    assert result.get(timeout=30) == 30
    assert router.sent_to_coda == 1  # the add step alone; Celery chained the rest


def test_spawn_task_accepts_a_celery_task(coda_supervisor: SupervisorProcess) -> None:
    with coda_supervisor.client() as client:
        assert client.run(add_then_double, args={"x": 2, "y": 3}, timeout=30) == 10
