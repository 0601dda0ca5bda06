"""Canvas results on the ``coda://`` result backend are those of Celery's Redis
backend (issue 17, items 2 to 4).

Every test runs twice, with the same stock ``celery worker`` app: once on
Redis (broker and results, the reference) and once on a Coda supervisor.
What ``.get()`` returns or raises must be the same: the exception of the
header task that failed (not ``ChordError``), at once (not after the
timeout), and nested results where the header holds a group.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from celery import Celery, chain, chord, group
from celery.canvas import Signature
from celery.exceptions import ChordError

from coda.testing import SupervisorProcess
from tests.broker.processes import CeleryWorker
from tests.redis_keys import delete_keys

pytestmark = pytest.mark.e2e

APP = "tests.apps.broker_app"
TIMEOUT = 20


@dataclass
class Canvas:
    """Signatures of the broker app's tasks, bound to one app (Redis or Coda)."""

    app: Celery

    def s(self, task: str, *args: Any) -> Signature:
        return self.app.signature(f"{APP}.{task}", args=args)

    def si(self, task: str, *args: Any) -> Signature:
        return self.app.signature(f"{APP}.{task}", args=args, immutable=True)


@pytest.fixture(scope="module")
def on_redis(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canvas]:
    prefix = f"coda-test-{os.environ['CODA_TEST_RUN']}-canvas-{uuid.uuid4().hex[:6]}:"
    env = {"CODA_BROKER_URL": redis_url, "CODA_TEST_CELERY_PREFIX": prefix}
    app = Celery(APP, broker=redis_url, backend=redis_url)
    options = {"global_keyprefix": prefix}
    app.conf.update(broker_transport_options=options, result_backend_transport_options=options)
    worker = CeleryWorker("", tmp_path_factory.mktemp("redis") / "worker.log", env=env)
    try:
        yield Canvas(app)
    finally:
        worker.stop()
        app.close()
        delete_keys(redis_url, f"{prefix}*")


@pytest.fixture(scope="module")
def on_coda(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Canvas]:
    with SupervisorProcess([], workers=0, extra_args=["--store", "memory://"]) as broker:
        url = f"coda://{broker.address}"
        app = Celery(APP, broker=url, backend=url)
        worker = CeleryWorker(broker.address, tmp_path_factory.mktemp("coda") / "worker.log")
        try:
            yield Canvas(app)
        finally:
            worker.stop()
            app.close()


@pytest.fixture(params=["redis", "coda"])
def c(request: pytest.FixtureRequest) -> Canvas:
    canvas: Canvas = request.getfixturevalue(f"on_{request.param}")
    return canvas


def outcome(signature: Signature) -> tuple[str, Any]:
    """What ``.get()`` gives: ("value", v) or ("raised", exception type, its args)."""
    try:
        return "value", signature.delay().get(timeout=TIMEOUT)
    except Exception as exc:  # the point of the test: which exception, with what
        return "raised", (type(exc), exc.args if isinstance(exc, KeyError) else None)


def test_a_failed_chord_header_raises_the_header_tasks_own_exception(c: Canvas) -> None:
    failing = chord([c.si("add", 1, 1), c.si("boom", "header")], c.s("tsum"))
    assert outcome(failing) == ("raised", (KeyError, ("header",)))


def test_a_chain_into_a_chord_whose_header_fails(c: Canvas) -> None:
    failing = chain(c.si("add", 1, 1), chord([c.s("add", 1), c.s("boom")], c.s("tsum")))
    assert outcome(failing) == ("raised", (KeyError, (2,)))


def test_a_chord_of_chains_one_of_which_fails(c: Canvas) -> None:
    header = [chain(c.si("add", 1, 1), c.s("add", 1)), chain(c.si("add", 2, 2), c.s("boom"))]
    assert outcome(chord(header, c.s("tsum"))) == ("raised", (KeyError, (4,)))


def test_a_group_in_a_chain_whose_member_fails(c: Canvas) -> None:
    ending = chain(c.si("add", 1, 1), group(c.s("add", 1), c.s("boom")))
    assert outcome(ending) == ("raised", (KeyError, (2,)))
    followed = chain(c.si("add", 1, 1), group(c.s("add", 1), c.s("boom")), c.s("tsum"))
    assert outcome(followed) == ("raised", (KeyError, (2,)))


def test_nested_chords_whose_inner_header_fails_raise_chord_error(c: Canvas) -> None:
    inner = chord([c.si("add", 1, 1), c.si("boom", "inner")], c.s("tsum"))
    kind, (error, _) = outcome(chord([inner, c.si("add", 3, 3)], c.s("tsum")))
    assert (kind, error) == ("raised", ChordError)


def test_a_chain_ending_in_a_group_inside_a_chord_header_keeps_its_nesting(c: Canvas) -> None:
    header = [c.si("echo", 1), chain(c.si("echo", 2), group(c.si("echo", 3), c.si("echo", 4)))]
    assert outcome(chord(header, c.s("echo"))) == ("value", [1, [3, 4]])
    inner = chord([c.si("echo", 2), c.si("echo", 3)], c.s("echo"))
    assert outcome(chord([c.si("echo", 1), inner], c.s("echo"))) == ("value", [1, [2, 3]])


def test_a_group_after_a_failed_chain_step_raises_the_steps_exception(on_coda: Canvas) -> None:
    """The group never runs: its members read FAILURE with the step's exception, so
    ``.get()`` raises it instead of waiting out its timeout. (Celery's own test,
    ``test_error_propagates_from_chord``; on Redis it hangs, Celery issue #6437.)"""
    c = on_coda
    stalled = chain(c.si("add", 1, 1), c.s("boom"), group(c.s("add", 1), c.s("add", 2)))
    result = stalled.delay()
    with pytest.raises(KeyError) as raised:
        result.get(timeout=TIMEOUT)
    assert raised.value.args == (2,)
    assert [member.state for member in result.results] == ["FAILURE", "FAILURE"]
