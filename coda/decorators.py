"""``@coda.task`` and ``@coda.workflow``: turn functions into registered units.

A decorated function stays an ordinary callable (so unit tests of user code
need no supervisor); it gains a ``spec`` describing how Coda runs it. Options
are keyword-only and checked at import time: a typo fails when the module is
imported, not when the first task runs.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Generic, Literal, ParamSpec, TypeVar, cast, overload

from .errors import ConfigurationError
from .registry import register, register_schedule
from .retry import RetryPolicy
from .schedules import Missed, declared_schedule
from .serialization import registry as serializers

__all__ = ["Spec", "TaskFunction", "WorkflowFunction", "task", "workflow"]

P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)

DEFAULT_QUEUE = "default"
MAX_NAME_LENGTH = 200

ExceptionTypes = type[BaseException] | Iterable[type[BaseException]]


@dataclass(frozen=True, slots=True)
class Spec:
    """How Coda runs one task or workflow."""

    name: str
    kind: Literal["task", "workflow"]
    fn: Callable[..., Any]
    is_async: bool
    queue: str = DEFAULT_QUEUE
    timeout: float | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    retry_on: tuple[type[BaseException], ...] = ()
    serializer: str | None = None
    # Run a sync task on the worker process's main thread, one at a time (the
    # event loop then runs on another thread): what signal-based time limits
    # such as Celery's soft_time_limit need.
    main_thread: bool = False
    # At least this many seconds between two starts of this task, per
    # supervisor (an adopted Celery task's ``rate_limit``); None: no limit.
    min_interval: float | None = None

    def retry_in(self, exc: BaseException, attempt: int) -> float | None:
        """The wait before another attempt after ``exc``, or None to fail now."""
        if self.kind == "task" and not isinstance(exc, self.retry_on):
            return None
        return self.retry.retry_in(attempt)


class _Decorated(Generic[P, R_co]):
    """A registered function that is still callable as itself.

    ``R_co`` is what calling it returns (a coroutine for ``async def``), so
    ``coda.context.spawn_task`` can tell an async task's awaited result type.
    """

    spec: Spec

    def __init__(self, fn: Callable[P, R_co], spec: Spec) -> None:
        functools.update_wrapper(self, fn)
        self.fn = fn
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<coda {self.spec.kind} {self.spec.name}>"


class TaskFunction(_Decorated[P, R_co]):
    """What ``@coda.task`` returns."""


class WorkflowFunction(_Decorated[P, R_co]):
    """What ``@coda.workflow`` returns."""


@overload
def task(fn: Callable[P, R], /) -> TaskFunction[P, R]: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    retry_on: ExceptionTypes = (),
    max_retries: int = 0,
    retry_delay: float = 1.0,
    retry_backoff: float = 1.0,
    retry_delay_max: float = 600.0,
    retry_jitter: bool = False,
    queue: str | None = None,
    timeout: float | None = None,
    serializer: str | None = None,
    schedule: str | timedelta | None = None,
    schedule_args: Mapping[str, Any] | None = None,
    schedule_missed: Missed = "latest",
    schedule_timezone: str = "UTC",
) -> Callable[[Callable[P, R]], TaskFunction[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    retry_on: ExceptionTypes = (),
    max_retries: int = 0,
    retry_delay: float = 1.0,
    retry_backoff: float = 1.0,
    retry_delay_max: float = 600.0,
    retry_jitter: bool = False,
    queue: str | None = None,
    timeout: float | None = None,
    serializer: str | None = None,
    schedule: str | timedelta | None = None,
    schedule_args: Mapping[str, Any] | None = None,
    schedule_missed: Missed = "latest",
    schedule_timezone: str = "UTC",
) -> TaskFunction[P, R] | Callable[[Callable[P, R]], TaskFunction[P, R]]:
    """Register a sync or async function as a task: ``@coda.task`` or ``@coda.task(...)``.

    A task raising one of ``retry_on`` (a class or an iterable of classes) is
    retried up to ``max_retries`` times, waiting ``retry_delay * retry_backoff
    ** n`` seconds (capped at ``retry_delay_max``, randomised with
    ``retry_jitter``); any other exception fails it at once. ``timeout``
    bounds one attempt: an async task is cancelled, a sync task's worker
    process is replaced. ``serializer`` encodes its result (a registered
    name; msgpack by default). ``schedule`` runs it by itself: see ``workflow``.
    """
    _check_bare_target("task", fn)
    retry_types = _exception_types(retry_on)
    policy = _policy(max_retries, retry_delay, retry_backoff, retry_delay_max, retry_jitter)
    _check_timeout(timeout)
    _check_serializer(serializer)
    checked_queue = _check_queue(queue)

    def decorate(fn: Callable[P, R]) -> TaskFunction[P, R]:
        spec = Spec(
            name=_name_for(fn, name),
            kind="task",
            fn=fn,
            is_async=inspect.iscoroutinefunction(fn),
            queue=checked_queue,
            timeout=timeout,
            retry=policy,
            retry_on=retry_types,
            serializer=serializer,
        )
        decorated: TaskFunction[P, R] = TaskFunction(fn, spec)
        _register(spec, schedule, schedule_args, schedule_missed, schedule_timezone)
        return decorated

    return decorate if fn is None else decorate(fn)


@overload
def workflow(fn: Callable[P, R], /) -> WorkflowFunction[P, R]: ...


@overload
def workflow(
    fn: None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    retry_delay: float = 0.0,
    queue: str | None = None,
    serializer: str | None = None,
    schedule: str | timedelta | None = None,
    schedule_args: Mapping[str, Any] | None = None,
    schedule_missed: Missed = "latest",
    schedule_timezone: str = "UTC",
) -> Callable[[Callable[P, R]], WorkflowFunction[P, R]]: ...


def workflow(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    max_retries: int = 3,
    retry_delay: float = 0.0,
    queue: str | None = None,
    serializer: str | None = None,
    schedule: str | timedelta | None = None,
    schedule_args: Mapping[str, Any] | None = None,
    schedule_missed: Missed = "latest",
    schedule_timezone: str = "UTC",
) -> WorkflowFunction[P, R] | Callable[[Callable[P, R]], WorkflowFunction[P, R]]:
    """Register an async function as a workflow: ``@coda.workflow`` or ``@coda.workflow(...)``.

    A workflow that raises is rerun from the top up to ``max_retries`` times;
    the tasks it spawned with a ``cache_key`` return their stored results
    instead of running again.

    ``schedule`` (a cron expression, in ``schedule_timezone``, or a
    ``timedelta``) has the supervisor run it at every tick, exactly once,
    with ``schedule_args``. ``schedule_missed`` says what a supervisor that
    was down during ticks does when it starts: run the ``"latest"`` once
    (the default), run ``"all"`` of them (at most 100) or ``"skip"`` them.
    """
    _check_bare_target("workflow", fn)
    policy = _policy(max_retries, retry_delay, 1.0, 600.0, False)
    _check_serializer(serializer)
    checked_queue = _check_queue(queue)

    def decorate(fn: Callable[P, R]) -> WorkflowFunction[P, R]:
        if not inspect.iscoroutinefunction(fn):
            raise ConfigurationError(
                f"@coda.workflow needs an 'async def' function; {fn.__qualname__} is not one"
            )
        spec = Spec(
            name=_name_for(fn, name),
            kind="workflow",
            fn=fn,
            is_async=True,
            queue=checked_queue,
            retry=policy,
            serializer=serializer,
        )
        # iscoroutinefunction narrowed fn to a coroutine of Any; keep the caller's R
        decorated = WorkflowFunction(cast(Callable[P, R], fn), spec)
        _register(spec, schedule, schedule_args, schedule_missed, schedule_timezone)
        return decorated

    return decorate if fn is None else decorate(fn)


def _register(
    spec: Spec,
    when: str | timedelta | None,
    args: Mapping[str, Any] | None,
    missed: Missed,
    timezone: str,
) -> None:
    """Register the spec, and its schedule if it has one (checked first:
    a bad schedule registers nothing)."""
    scheduled = declared_schedule(
        spec.fn,
        spec.name,
        spec.kind,
        when=when,
        args=args,
        missed=missed,
        timezone=timezone,
        serializer=spec.serializer,
    )
    register(spec)
    if scheduled is not None:
        register_schedule(scheduled)


def _check_bare_target(kind: str, fn: object) -> None:
    """``@coda.task`` gets the function; ``@coda.task(...)`` gets only keywords."""
    if fn is None or callable(fn):
        return
    if isinstance(fn, str):
        raise ConfigurationError(
            f"@coda.{kind} takes its options by keyword: write @coda.{kind}(name={fn!r})"
        )
    raise ConfigurationError(f"@coda.{kind} decorates a function, got {fn!r}")


def _name_for(fn: Callable[..., Any], name: str | None) -> str:
    if name is None:
        name = f"{fn.__module__}.{fn.__qualname__}"
    return check_name(name)


def check_name(name: object) -> str:
    """Refuse names that would be ambiguous or unprintable in logs."""
    if not isinstance(name, str) or not name:
        raise ConfigurationError(
            f"a task or workflow name must be a non-empty string, not {name!r}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise ConfigurationError(
            f"name {name[:40]!r}... is longer than {MAX_NAME_LENGTH} characters"
        )
    if not name.isprintable() or any(ch.isspace() for ch in name):
        raise ConfigurationError(f"name {name!r} contains whitespace or unprintable characters")
    return name


def _check_queue(queue: str | None) -> str:
    if queue is None:
        return DEFAULT_QUEUE
    try:
        return check_name(queue)
    except ConfigurationError as exc:
        raise ConfigurationError(f"invalid queue: {exc}") from None


def _exception_types(retry_on: object) -> tuple[type[BaseException], ...]:
    """``retry_on`` as a tuple: one class, or any iterable of classes (not a string)."""
    if isinstance(retry_on, type):
        retry_on = (retry_on,)
    if isinstance(retry_on, str | bytes) or not isinstance(retry_on, Iterable):
        raise ConfigurationError(
            f"retry_on must be an exception class or an iterable of them, got {retry_on!r}"
        )
    types = tuple(retry_on)
    for exc_type in types:
        if not (isinstance(exc_type, type) and issubclass(exc_type, BaseException)):
            raise ConfigurationError(f"retry_on must hold exception classes, got {exc_type!r}")
    return types


def _check_serializer(serializer: str | None) -> None:
    """An unknown name fails here, at import, not when the first result is encoded."""
    if serializer is None:
        return
    try:
        serializers.content_type_for(serializer)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"serializer=: {exc}; register it (coda.serialization.registry.register or"
            " kombu.serialization.register) before the module that uses it is imported"
        ) from None


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not timeout > 0:
        raise ConfigurationError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _policy(
    max_retries: int, delay: float, backoff: float, max_delay: float, jitter: bool
) -> RetryPolicy:
    if not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    if delay < 0 or max_delay < 0:
        raise ConfigurationError("retry delays must be >= 0 seconds")
    if backoff < 1:
        raise ConfigurationError(f"retry_backoff must be >= 1 (1 means fixed), got {backoff!r}")
    return RetryPolicy(max_retries, float(delay), float(backoff), float(max_delay), bool(jitter))
