"""Adopt a Celery app: register each of its tasks as a Coda task of the same name.

``coda supervisor --celery-app proj.celery:app`` calls ``adopt_app_path`` in
the supervisor (which only needs each name's queue and timeout) and in every
worker (``role="worker"``), where each task's Coda function is
``CeleryExecutor.run``. ``adopt(app)`` is the Python equivalent.

- Every task of the finalized app (``@app.task``, ``@shared_task``, modules in
  ``imports``/``include`` and autodiscovered ones) is adopted, except Celery's
  ``celery.*`` built-ins.
- Queues: a task's Celery queue (``queue=``, else ``task_routes``, else the
  default) names the Coda queue, except that Celery's default queue
  (``task_default_queue``, "celery") maps to Coda's "default"; run
  ``coda supervisor --queues default,ingest`` as you would ``celery -Q``.
- ``coda://`` is registered with kombu here, in the supervisor and in every
  worker, so an app on that broker needs no ``import coda.compat.kombu`` to
  be adopted (its stock Celery workers still do, or ``broker_transport``).
- With ``beat=True`` (``--celery-beat``, in the supervisor) the entries of
  the app's ``beat_schedule`` are registered as schedules (``beat``).
- The spec's ``timeout`` is the hard limit (the supervisor's fallback kill),
  its serializer the app's ``result_serializer``, and it runs on the worker's
  main thread, one at a time (``--workers N`` is ``-c N``). Coda's own retry
  policy stays off: Celery code decides retries.
- ``rate_limit`` (the task's, from ``task_annotations`` or
  ``task_default_rate_limit``; off with ``worker_disable_rate_limits``) is
  the spec's ``min_interval``: the supervisor starts the task at most that
  often, across all its workers, as one Celery worker instance does.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import signals
from celery.app.utils import find_app
from celery.utils.time import rate

import coda.compat.kombu  # noqa: F401 - an adopted app's coda:// URL works without its own import
from coda import registry
from coda.decorators import DEFAULT_QUEUE, Spec
from coda.errors import ConfigurationError
from coda.retry import RetryPolicy

from .hook import hook_for

__all__ = ["adopt", "adopt_app_path", "celery_queue", "coda_queue", "load_app"]

log = logging.getLogger("coda.compat.celery")

_executors: dict[int, Any] = {}


def load_app(path: str) -> Any:
    """The Celery app at ``module:attribute`` (or a module, found as ``celery -A`` does)."""
    try:
        return find_app(path)
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load the Celery app {path!r}: {exc}") from exc


def adopt_app_path(path: str, role: str = "supervisor", *, beat: bool = False) -> list[str]:
    return adopt(load_app(path), role=role, beat=beat)


def adopt(app: Any, *, role: str = "supervisor", beat: bool = False) -> list[str]:
    """Register the app's tasks with Coda (and with ``beat`` its
    ``beat_schedule`` as schedules); return the tasks' names."""
    if role not in ("supervisor", "worker"):
        raise ConfigurationError(f"role must be 'supervisor' or 'worker', not {role!r}")
    app.loader.import_default_modules()
    app.finalize(auto=True)
    hook_for(app)  # self.retry() inside a Coda worker is captured, not published
    executor = _executor(app) if role == "worker" else None
    names = []
    for name, task in sorted(app.tasks.items()):
        if name.startswith("celery."):
            continue
        registry.register(_spec(app, name, task, executor))
        names.append(name)
    from .canvas_flow import register_canvas_units
    from .control import register_control_units

    register_canvas_units(app, executor)
    register_control_units(app, executor)
    if beat:
        from .beat import beat_schedules

        for scheduled in beat_schedules(app):
            registry.register_schedule(scheduled)
    if executor is not None:
        signals.worker_process_init.send(sender=None)
    log.info("adopted %d Celery tasks from %s", len(names), app.main or app)
    return names


def _executor(app: Any) -> Any:
    from .execute import CeleryExecutor

    executor = _executors.get(id(app))
    if executor is None:
        executor = _executors[id(app)] = CeleryExecutor(app)
    return executor


def celery_queue(app: Any, name: str, task: Any) -> str:
    """The Celery queue a call without ``queue=`` goes to."""
    queue = getattr(task, "queue", None)
    if not queue:
        queue = app.amqp.router.route({}, name, (), {}, task).get("queue")
    queue = getattr(queue, "name", queue)
    return str(queue or app.conf.task_default_queue)


def coda_queue(app: Any, queue: str | None) -> str | None:
    """Celery's default queue is Coda's "default"; other names are kept."""
    if queue is None:
        return None
    return DEFAULT_QUEUE if queue == app.conf.task_default_queue else queue


def _spec(app: Any, name: str, task: Any, executor: Any) -> Spec:
    hard = task.time_limit if task.time_limit is not None else app.conf.task_time_limit
    return Spec(
        name=name,
        kind="task",
        fn=_entry(name, executor),
        is_async=False,
        queue=coda_queue(app, celery_queue(app, name, task)) or DEFAULT_QUEUE,
        timeout=float(hard) if hard else None,
        retry=RetryPolicy(max_retries=0),
        serializer=app.conf.result_serializer,
        main_thread=True,
        min_interval=_min_interval(app, task),
    )


def _min_interval(app: Any, task: Any) -> float | None:
    """Seconds between two starts under the task's ``rate_limit``, if any."""
    if app.conf.worker_disable_rate_limits or not task.rate_limit:
        return None
    try:
        per_second = float(rate(task.rate_limit))
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(
            f"task {task.name!r}: rate_limit {task.rate_limit!r} is not a rate "
            "(use '10/s', '100/m' or '1000/h')"
        ) from exc
    return 1.0 / per_second if per_second > 0 else None


def _entry(name: str, executor: Any) -> Any:
    """A function per task (the registry tells re-registrations apart by qualname)."""
    if executor is None:

        def entry(**job_args: Any) -> Any:
            raise ConfigurationError(f"Celery task {name!r} runs in workers, not here")

    else:

        def entry(**job_args: Any) -> Any:
            return executor.run(name, **job_args)

    entry.__qualname__ = entry.__name__ = f"celery:{name}"
    entry.__module__ = __name__
    return entry
