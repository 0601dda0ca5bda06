"""Eager mode: Celery users' test suites keep running in-process, routed or not.

With ``task_always_eager``, ``Task.apply_async`` (hence ``.delay()``) and the
canvas types run the task in the calling process and return an
``EagerResult`` *before* anything reaches ``app.send_task``, so the Coda
routing installed by ``install()`` never sees those calls: no supervisor is
needed and nothing changes for the tests. Only ``app.send_task(name)``
publishes even in eager mode (Celery's own behaviour, with a warning).

``eager(app)`` is the testing helper: it turns eager mode on (and
``task_eager_propagates``) for a ``with`` block, and also runs
``app.send_task`` calls in-process, so code that enqueues by name is covered
too. Settings are restored on exit.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .hook import hook_for

__all__ = ["eager"]

_SETTINGS = ("task_always_eager", "task_eager_propagates")


@contextlib.contextmanager
def eager(app: Any, *, propagate: bool = True) -> Iterator[None]:
    """Run every task of ``app`` in this process while the block runs."""
    saved = {name: app.conf[name] for name in _SETTINGS}
    hook = hook_for(app)
    original, router = hook.original, hook.router

    def send_task_eagerly(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        task = app.tasks.get(name)
        if task is None:
            return original(name, args, kwargs, **options)
        keep = {k: options[k] for k in ("task_id", "link", "link_error") if k in options}
        return task.apply(args, kwargs, **keep)

    app.conf.update(task_always_eager=True, task_eager_propagates=propagate)
    hook.original, hook.router = send_task_eagerly, None
    try:
        yield
    finally:
        hook.original, hook.router = original, router
        app.conf.update(saved)
