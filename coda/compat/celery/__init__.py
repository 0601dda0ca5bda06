"""Run a Celery codebase on Coda, one task at a time.

- ``adopt(app)`` / ``coda supervisor --celery-app proj.celery:app``: every task
  of the app becomes a Coda task of the same name, executed with Celery's
  semantics (``execute``, ``limits``, ``reports``).
- ``install(app, supervisor=..., rollout={...})``: ``.delay()``,
  ``.apply_async()`` and ``send_task()`` go to Coda for the rolled-out share
  of each task, to Celery's broker otherwise (``routing``, ``rollout``);
  results read back through the app's backend or the supervisor (``results``).
- Canvases of rolled-out tasks run as one Coda workflow (``canvas``,
  ``canvas_flow``, ``canvas_route``); ``eager(app)`` is the testing helper.
- The job payload contract (a protocol-v2 message) is documented in ``message``.
"""

from __future__ import annotations

from .adopt import adopt, adopt_app_path, load_app
from .eager import eager
from .message import ENVELOPE, CeleryCall, CeleryMessage
from .results import CodaAsyncResult
from .rollout import Rollout
from .routing import CodaRouter, SupervisorUnreachable, install, uninstall

__all__ = [
    "ENVELOPE",
    "CeleryCall",
    "CeleryMessage",
    "CodaAsyncResult",
    "CodaRouter",
    "Rollout",
    "SupervisorUnreachable",
    "adopt",
    "adopt_app_path",
    "eager",
    "install",
    "load_app",
    "uninstall",
]
