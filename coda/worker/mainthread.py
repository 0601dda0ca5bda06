"""An executor whose single thread is the process's main thread.

Python delivers signals to the main thread only, and a handler that raises
is the one way to interrupt a task blocked in ``time.sleep`` or a socket
read (PEP 475 retries the system call when the handler returns). Tasks
whose spec asks for ``main_thread`` therefore run here, one at a time, while
the worker's event loop runs on a second thread. The main thread calls
``run_until_shutdown()``; the loop thread submits work and, when the worker
stops, calls ``shutdown()``.
"""

from __future__ import annotations

import queue
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

__all__ = ["MainThreadExecutor"]

P = ParamSpec("P")
T = TypeVar("T")

_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class MainThreadExecutor(Executor):
    """Runs submitted calls in order on whichever thread serves it (the main one)."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._shut = False

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._shut:
            raise RuntimeError("cannot submit to a main-thread executor after shutdown")
        future: Future[T] = Future()
        self._work.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._shut = True
        self._work.put(None)

    def run_until_shutdown(self) -> None:
        """Serve submitted calls on the calling thread until ``shutdown()``."""
        while True:
            work = self._work.get()
            if work is None:
                return
            future, fn, args, kwargs = work
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # the caller decides what is fatal
                future.set_exception(exc)
            else:
                future.set_result(result)
            del work, future, fn, args, kwargs  # drop references before blocking again
