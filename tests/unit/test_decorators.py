from __future__ import annotations

import asyncio
from typing import Any

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


@coda.task
def bare_task(x: int) -> int:
    return x + 1


@coda.workflow
async def bare_workflow(x: int) -> int:
    return x


def test_bare_decorators_register_like_the_called_form() -> None:
    assert isinstance(bare_task, coda.TaskFunction)
    assert isinstance(bare_workflow, coda.WorkflowFunction)
    task_spec = get_spec("tests.unit.test_decorators.bare_task", "task")
    workflow_spec = get_spec("tests.unit.test_decorators.bare_workflow", "workflow")
    assert (task_spec.fn, task_spec.retry.max_retries) == (bare_task.fn, 0)
    assert (workflow_spec.fn, workflow_spec.retry.max_retries) == (bare_workflow.fn, 3)
    assert bare_task(1) == 2


def test_a_bare_workflow_must_be_async() -> None:
    def not_async() -> None: ...

    with pytest.raises(ConfigurationError, match="async def"):
        coda.workflow(not_async)


@pytest.mark.parametrize("decorator", [coda.task, coda.workflow])
def test_a_positional_name_is_refused_with_the_keyword_form(decorator: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"by keyword: write @coda\.\w+\(name='x\.y'\)"):
        decorator("x.y")


@pytest.mark.parametrize(
    "retry_on",
    [[KeyError, ValueError], {KeyError, ValueError}, (e for e in (KeyError, ValueError))],
    ids=["list", "set", "generator"],
)
def test_retry_on_takes_any_iterable_of_exception_classes(retry_on: Any) -> None:
    def flaky() -> None: ...

    flaky.__qualname__ = f"flaky_{type(retry_on).__name__}"
    decorated = coda.task(retry_on=retry_on, max_retries=1)(flaky)
    assert set(decorated.spec.retry_on) == {KeyError, ValueError}
    assert decorated.spec.retry_in(ValueError(), attempt=1) == 1.0


@pytest.mark.parametrize("decorator", [coda.task, coda.workflow])
def test_an_unknown_serializer_fails_at_decoration(decorator: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        decorator(serializer="yaml-ish")
    message = str(raised.value)
    assert "unknown serializer 'yaml-ish'" in message
    assert all(name in message for name in ("json", "msgpack", "pickle"))
    assert "register it" in message


def test_a_known_serializer_is_kept() -> None:
    async def encoded_as_json() -> None: ...

    assert coda.workflow(serializer="json")(encoded_as_json).spec.serializer == "json"


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
        ({"retry_on": "KeyError"}, "an exception class or an iterable of them"),
        ({"retry_on": 42}, "an exception class or an iterable of them"),
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
