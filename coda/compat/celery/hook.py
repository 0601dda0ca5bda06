"""The one hook into Celery's publishing: ``app.send_task``.

``.delay()``, ``.apply_async()``, ``Signature.apply_async()``, canvas
members, links, chain continuations, chord callbacks and ``self.retry()``
all end in ``app.send_task`` (eager mode never reaches it). Replacing it as
an *instance* attribute of one app, never on the class, leaves other apps
in the process untouched. The hook does two things, in order:

1. inside a Coda worker, a publish of the running task's own id is its next
   attempt: captured (see ``scope``), never sent anywhere;
2. with ``install()``, the router decides Coda or Celery's broker.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, Protocol

from .events import EventForwarder
from .producer import MessageProducer
from .scope import current_scope

__all__ = ["SendTaskHook", "hook_for"]

SendTask = Callable[..., Any]


class Router(Protocol):
    def send(
        self, send_task: SendTask, name: str, args: Any, kwargs: Any, options: dict[str, Any]
    ) -> Any: ...

    def close(self) -> None: ...


class SendTaskHook:
    """Installed as ``app.send_task``; ``original`` is the app's bound method."""

    def __init__(self, original: SendTask, app: Any) -> None:
        self.original = original
        self.events = EventForwarder(app)  # task-sent events of captured retries
        self.router: Router | None = None
        functools.update_wrapper(self, original)

    def __call__(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        scope = current_scope()
        if scope is not None and options.get("task_id") == scope.task_id:
            options["producer"] = MessageProducer(scope.capture, self.events)
            return self.original(name, args, kwargs, **options)
        if self.router is not None and not name.startswith("celery."):
            return self.router.send(self.original, name, args, kwargs, options)
        return self.original(name, args, kwargs, **options)


def hook_for(app: Any) -> SendTaskHook:
    """The app's hook, installed on first use."""
    hook = app.__dict__.get("send_task")
    if isinstance(hook, SendTaskHook):
        return hook
    hook = SendTaskHook(app.send_task, app)
    app.send_task = hook
    return hook
