from __future__ import annotations

import asyncio

import pytest

import coda
from coda.errors import ConfigurationError, NotInWorkflowError, UnknownNameError
from coda.registry import get_spec, resolve_name
from coda.retry import RetryPolicy


@coda.task()
def plain(x: int) -> int:
    return x * 2


@coda.task(name="custom.name", queue="q", retry_on=KeyError, max_retries=2, timeout=3)
async def renamed(x: int) -> int:
    return x


@coda.workflow()
async def flow(x: int) -> int:
    return x


def test_decorated_functions_stay_plain_callables() -> None:
    assert plain(2) == 4
    assert asyncio.run(renamed(5)) == 5
    assert asyncio.run(flow(1)) == 1


def test_default_names_are_module_qualname() -> None:
    assert plain.name == "tests.unit.test_decorators.plain"
    assert get_spec("tests.unit.test_decorators.flow").kind == "workflow"
    assert resolve_name(plain) == plain.name
    assert resolve_name("x.y") == "x.y"


def test_options_are_recorded() -> None:
    spec = get_spec("custom.name", "task")
    assert (spec.queue, spec.timeout, spec.is_async, spec.retry_on) == ("q", 3, True, (KeyError,))
    assert spec.retry_in(KeyError(), attempt=1) == 1.0
    assert spec.retry_in(KeyError(), attempt=3) is None
    assert spec.retry_in(ValueError(), attempt=1) is None
    assert get_spec(flow.name).retry.max_retries == 3


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_retries": -1}, "max_retries"),
        ({"retry_on": (42,)}, "exception classes"),
        ({"timeout": 0}, "timeout"),
        ({"queue": "has space"}, "invalid queue"),
        ({"retry_backoff": 0.5}, "retry_backoff"),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        coda.task(**options)(lambda: None)  # type: ignore[arg-type]


def test_unknown_option_fails_at_import() -> None:
    with pytest.raises(TypeError):
        coda.task(retries=3)  # type: ignore[call-arg]


def test_workflow_must_be_async() -> None:
    with pytest.raises(ConfigurationError, match="async def"):
        coda.workflow()(lambda: None)


def test_name_clash_is_refused() -> None:
    def other() -> None: ...

    with pytest.raises(ConfigurationError, match="already registered"):
        coda.task(name="custom.name")(other)


def test_unknown_names() -> None:
    with pytest.raises(UnknownNameError, match="'nope'"):
        get_spec("nope")
    with pytest.raises(UnknownNameError):
        get_spec(plain.name, "workflow")


def test_context_outside_a_workflow() -> None:
    with pytest.raises(NotInWorkflowError, match="spawn_task"):
        coda.context.spawn_task(plain, args={"x": 1})
    assert not coda.context.in_workflow()


def test_retry_policy_backoff_and_jitter() -> None:
    fixed = RetryPolicy(max_retries=3, delay=2.0)
    assert [fixed.retry_in(n) for n in (1, 2, 3, 4)] == [2.0, 2.0, 2.0, None]
    growing = RetryPolicy(max_retries=5, delay=1.0, backoff=2.0, max_delay=5.0)
    assert [growing.retry_in(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(max_retries=10, delay=1.0, backoff=2.0, jitter=True)
    assert all(0 <= (jittered.retry_in(4) or 0) <= 8.0 for _ in range(100))
