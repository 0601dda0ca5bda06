"""What a Coda-routed ``.delay()`` returns behaves like ``AsyncResult`` (issue 3, item 3)."""

from __future__ import annotations

import celery.exceptions
import pytest
from celery.result import AsyncResult
from kombu.exceptions import ContentDisallowed

from coda.compat.celery.results import result_class_for
from coda.testing import wait_until
from tests.apps import celery_app as tasks
from tests.compat.conftest import Route

pytestmark = pytest.mark.e2e

ALL = {"tests.apps.celery_app.*": 1.0}


def test_success_through_the_apps_backend(route: Route) -> None:
    route(ALL)
    result = tasks.add.delay(20, 22)
    assert isinstance(result, AsyncResult)
    assert result.get(timeout=30) == 42
    assert result.ready() and result.successful() and not result.failed()
    assert (result.state, result.status, result.result, result.traceback) == (
        "SUCCESS",
        "SUCCESS",
        42,
        None,
    )
    result.forget()
    assert AsyncResult(result.id, app=tasks.app).state == "PENDING"


def test_failure_keeps_the_exception_type(route: Route) -> None:
    route(ALL)
    result = tasks.fail.delay("bad input")
    with pytest.raises(ValueError, match="bad input"):
        result.get(timeout=30)
    assert result.state == "FAILURE" and result.failed() and not result.successful()
    assert isinstance(result.result, ValueError)
    assert "ValueError: bad input" in result.traceback
    returned = result.get(timeout=5, propagate=False)
    assert isinstance(returned, ValueError)


def test_pending_then_timeout(route: Route) -> None:
    route(ALL)
    result = tasks.add.apply_async((1, 1), countdown=2)
    assert result.state == "PENDING" and not result.ready()
    with pytest.raises(celery.exceptions.TimeoutError):
        result.get(timeout=0.2)
    assert result.get(timeout=30) == 2


def test_results_read_from_the_supervisor_without_a_backend(route: Route) -> None:
    """``CodaAsyncResult``: what routed calls return when the app has no result backend."""
    router = route(ALL)
    result_cls = result_class_for(tasks.app, router)
    ok = result_cls(tasks.add.delay(2, 3).id)
    assert isinstance(ok, AsyncResult)
    assert ok.get(timeout=30) == 5
    assert (ok.state, ok.ready(), ok.successful(), ok.failed(), ok.result) == (
        "SUCCESS",
        True,
        True,
        False,
        5,
    )
    bad = result_cls(tasks.fail.delay("nope").id)
    with pytest.raises(ValueError, match="nope"):
        bad.get(timeout=30)
    assert bad.state == "FAILURE" and bad.failed() and "ValueError" in bad.traceback
    late = result_cls(tasks.add.apply_async((1, 1), countdown=1).id)
    assert late.state == "PENDING"
    wait_until(late.ready, timeout=30, what="the delayed task")
    assert late.result == 2


def test_content_type_outside_accept_content_is_refused_loudly(route: Route) -> None:
    """Celery would leave this task PENDING forever; Coda stores the refusal."""
    route(ALL)
    result = tasks.add.apply_async((1, 2), serializer="pickle")
    with pytest.raises(ContentDisallowed, match="pickle"):
        result.get(timeout=30)
