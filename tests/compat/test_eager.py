"""Eager mode needs no supervisor, routed or not (issue 3, item 5)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import chain, chord, group
from celery.result import EagerResult

from coda.compat.celery import install, uninstall
from coda.compat.celery.eager import eager
from tests.apps import celery_app as tasks

UNREACHABLE = "127.0.0.1:1"  # any call reaching the router would fail loudly


@pytest.fixture
def routed_everything() -> Iterator[None]:
    install(tasks.app, supervisor=UNREACHABLE, rollout={"tests.apps.celery_app.*": 1.0})
    yield
    uninstall(tasks.app)


@pytest.fixture
def always_eager() -> Iterator[None]:
    tasks.app.conf.update(task_always_eager=True, task_eager_propagates=True)
    yield
    tasks.app.conf.update(task_always_eager=False, task_eager_propagates=False)


def test_task_always_eager_runs_routed_tasks_in_process(
    routed_everything: None, always_eager: None
) -> None:
    result = tasks.add.delay(2, 3)
    assert isinstance(result, EagerResult) and result.get() == 5
    assert tasks.request_info.delay().get()["is_eager"] is True
    with pytest.raises(ValueError):
        tasks.fail.delay("eager failure")


def test_task_always_eager_runs_canvases_in_process(
    routed_everything: None, always_eager: None
) -> None:
    assert chain(tasks.add.s(1, 2), tasks.mul.s(10)).delay().get() == 30
    assert group(tasks.add.s(i, i) for i in range(3)).delay().get() == [0, 2, 4]
    assert chord([tasks.add.s(1, 1), tasks.add.s(2, 2)], tasks.tsum.s()).delay().get() == 6


def test_eager_helper_also_covers_send_task_and_restores(routed_everything: None) -> None:
    with eager(tasks.app):
        assert tasks.app.send_task(tasks.add.name, args=(4, 4)).get() == 8
        assert tasks.add.delay(1, 1).get() == 2
        with pytest.raises(ValueError):
            tasks.app.send_task(tasks.fail.name, args=("x",)).get()
    assert tasks.app.conf.task_always_eager is False
