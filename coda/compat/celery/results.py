"""Results of Coda-routed calls.

**With a result backend** (the usual case) nothing here is needed: Coda
workers store results through ``task.backend``, the app's own backend, with
Celery's tracer, so the ``AsyncResult`` that ``.delay()`` returns is the
app's own class and behaves exactly as for a Celery-run task (``get``,
``state``, ``GroupResult``, ``AsyncResult(id)`` rebuilt elsewhere, chords
with mixed fleets). Failures re-raise the original exception class when its
module is imported in the reading process, as in Celery
(``Backend.exception_to_python``).

**Without one** (``DisabledBackend``), ``install`` makes routed calls return
``CodaAsyncResult``: a real ``AsyncResult`` subclass (``isinstance`` checks
keep working) whose answers come from the supervisor over Coda's client
protocol (``Await`` → ``Finished``). It reports ``PENDING`` until the run ends
(Celery without ``track_started`` does the same), then ``SUCCESS`` or
``FAILURE``; a failure is re-raised as the original exception class when
that class can be imported (only subclasses of ``BaseException`` are ever
instantiated), else as ``coda.TaskFailed``.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import states
from celery.result import AsyncResult

from coda.errors import ResultTimeoutError, TaskFailed

__all__ = ["CodaAsyncResult", "rebuild_exception"]

_PROBE = 0.05  # how long ready()/state wait for an answer that is not there yet


def rebuild_exception(failure: TaskFailed) -> BaseException:
    """The remote exception as its own class when importable, else ``failure``."""
    module_name, _, qualname = failure.type_name.rpartition(".")
    try:
        target: Any = importlib.import_module(module_name or "builtins")
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError, ValueError):
        return failure
    if not (isinstance(target, type) and issubclass(target, BaseException)):
        return failure
    try:
        exc = target(failure.message)
    except Exception:
        return failure
    exc.__cause__ = failure  # keeps the remote traceback reachable
    return exc


class CodaAsyncResult(AsyncResult):  # type: ignore[misc]  # Celery ships no types: Any
    """An ``AsyncResult`` answered by the Coda supervisor (apps without a backend)."""

    router: Any = None  # set on the subclass ``install`` makes

    def __init__(self, id: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(id, *args, **kwargs)
        self._outcome: tuple[str, Any, str | None] | None = None

    def _fetch(self, timeout: float | None) -> tuple[str, Any, str | None] | None:
        if self._outcome is None:
            handle = self.router.client().handle(self.id)
            try:
                value = handle.result(timeout=timeout)
            except ResultTimeoutError:
                return None
            except TaskFailed as failure:
                self._outcome = (
                    states.FAILURE,
                    rebuild_exception(failure),
                    failure.remote_traceback,
                )
            else:
                self._outcome = (states.SUCCESS, value, None)
        return self._outcome

    def get(
        self,
        timeout: float | None = None,
        propagate: bool = True,
        interval: float = 0.5,
        **kwargs: Any,
    ) -> Any:
        if self.ignored:
            return None
        outcome = self._fetch(timeout)
        if outcome is None:
            from celery.exceptions import TimeoutError as CeleryTimeout

            raise CeleryTimeout("The operation timed out.")
        state, value, _ = outcome
        if state == states.FAILURE and propagate:
            raise value
        return value

    wait = get

    def ready(self) -> bool:
        return self._fetch(_PROBE) is not None

    @property
    def state(self) -> str:
        outcome = self._fetch(_PROBE)
        return states.PENDING if outcome is None else outcome[0]

    status = state

    @property
    def result(self) -> Any:
        outcome = self._fetch(_PROBE)
        return None if outcome is None else outcome[1]

    info = result

    @property
    def traceback(self) -> str | None:
        outcome = self._fetch(_PROBE)
        return None if outcome is None else outcome[2]

    def successful(self) -> bool:
        return bool(self.state == states.SUCCESS)

    def failed(self) -> bool:
        return bool(self.state == states.FAILURE)

    def forget(self) -> None:
        """The supervisor expires finished runs after ``--result-ttl``; drop the local copy."""
        self._outcome = None

    def _get_task_meta(self) -> dict[str, Any]:
        outcome = self._fetch(_PROBE)
        if outcome is None:
            return {"status": states.PENDING, "result": None, "task_id": self.id}
        return {
            "status": outcome[0],
            "result": outcome[1],
            "traceback": outcome[2],
            "task_id": self.id,
        }


def result_class_for(app: Any, router: Any) -> type[CodaAsyncResult]:
    """A ``CodaAsyncResult`` subclass bound to one app and one router's client."""
    return type("CodaAsyncResult", (CodaAsyncResult, app.AsyncResult), {"router": router})
