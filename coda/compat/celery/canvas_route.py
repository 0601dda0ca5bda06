"""Send a whole canvas to Coda as one workflow, when all of it is rolled out.

``install()`` patches ``apply_async`` of Celery's ``_chain``, ``group`` and
``_chord`` classes once (class level: canvases are built from many classes,
not from an app). The patch takes over only when all of these hold, and
otherwise calls Celery's own method unchanged:

- the call is a top-level one (not Celery's own recursion, e.g. a chord
  applying its header), with no ``producer``/``connection`` of its own;
- the canvas's app has a router (``install``) and is not in eager mode;
- the canvas parses (``canvas.parse``) and one draw against the rollout
  puts *every* leaf on Coda (a canvas is never split between fleets by
  this path; a canvas left to Celery still routes each leaf on its own,
  through ``send_task``, and completes through the app's backend).

It then freezes a clone (Celery assigns every id, ``task_id=`` honoured),
submits the ``coda.compat.celery.canvas`` workflow with the frozen tree
under the canvas's result id, and returns the frozen result: an
``AsyncResult`` whose id is the chain's last step (or the chord's body),
with ``.parent`` links, or a ``GroupResult``. For an app without a result
backend a chain or chord returns a ``CodaAsyncResult`` reading the
workflow's own outcome, and a group is left to Celery.
"""

from __future__ import annotations

import contextlib
import functools
import random
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any

from celery.backends.base import DisabledBackend
from celery.canvas import _chain, _chord, group

from .canvas import UnsupportedCanvas, encode_tree, flatten_groups, leaves, parse
from .canvas_flow import CANVAS_WORKFLOW
from .hook import SendTaskHook

__all__ = ["patch_canvas"]

_in_canvas: ContextVar[bool] = ContextVar("coda_celery_in_canvas", default=False)
_ACCEPTED_OPTIONS = frozenset({"task_id", "add_to_parent"})
_patched = False


def patch_canvas() -> None:
    """Patch the three canvas classes (idempotent)."""
    global _patched
    if _patched:
        return
    for cls in (_chain, group, _chord):
        cls.apply_async = _intercepting(cls.apply_async)
    _patched = True


@contextlib.contextmanager
def _celery_path() -> Iterator[None]:
    token = _in_canvas.set(True)
    try:
        yield
    finally:
        _in_canvas.reset(token)


def _intercepting(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def apply_async(self: Any, args: Any = None, kwargs: Any = None, **options: Any) -> Any:
        router = None if _in_canvas.get() else _router_for(self, options)
        if router is not None:
            result = _submit(self, router, args, kwargs, options)
            if result is not None:
                return result
        with _celery_path():
            return original(self, args, kwargs, **options)

    return apply_async


def _router_for(sig: Any, options: dict[str, Any]) -> Any:
    if any(key not in _ACCEPTED_OPTIONS for key in options if options[key] is not None):
        return None
    app = sig._get_app() if isinstance(sig, _chord) else sig.app
    hook = app.__dict__.get("send_task")
    if not isinstance(hook, SendTaskHook) or hook.router is None:
        return None
    if app.conf.task_always_eager:
        return None
    return hook.router


def _submit(sig: Any, router: Any, args: Any, kwargs: Any, options: dict[str, Any]) -> Any:
    """Submit the canvas as a workflow; None to leave it to Celery."""
    app = router.app
    no_backend = isinstance(app.backend, DisabledBackend)
    if no_backend and isinstance(sig, group):
        return None
    try:
        frozen = flatten_groups(sig.clone())
        result = frozen.freeze(_id=options.get("task_id"))
        tree = parse(frozen)
    except UnsupportedCanvas:
        return None
    draw = random.random()
    if not all(_on_coda(router, leaf.name, draw) for leaf in leaves(tree)):
        return None
    job_args = {"tree": encode_tree(tree), "args": list(args or ()), "kwargs": dict(kwargs or {})}
    if not router.submit_workflow(CANVAS_WORKFLOW, job_args, result.id):
        return None  # unreachable, and falling back to Celery is configured
    if no_backend:
        return router.result_cls(result.id)
    return result


def _on_coda(router: Any, name: str, draw: float) -> bool:
    fraction: float = router.rollout.fraction(name)
    return fraction >= 1.0 or draw < fraction
