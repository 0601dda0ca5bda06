"""The dashboard the supervisor serves with ``--http``: pages and a JSON API
over what a ``RunSource`` answers (the supervisor's read model, in-process).

- ``app.py``: the Starlette application (pages, ``/api/...``), built by
  ``create_app``, which takes extra routes (``/metrics``);
- ``access.py``: who may ask (the token, the host, same-origin changes);
- ``server.py``: uvicorn inside the supervisor's event loop;
- ``source.py``: what the dashboard reads, and ``views.py`` how it is shown;
- ``static/``: the pages, plain HTML, CSS and JavaScript (no build step).
"""

from __future__ import annotations

from .app import create_app
from .server import DashboardServer, Tls
from .source import RunSource

__all__ = ["DashboardServer", "RunSource", "Tls", "create_app"]
