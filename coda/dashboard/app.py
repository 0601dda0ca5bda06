"""The dashboard's routes: three pages and the JSON API they poll.

Pages (static HTML that fetches the API):

- ``/``: the overview; ``/runs``: the runs, filtered; ``/runs/ID``: a run.

API (``{"error": {"code", "message"}}`` with a 4xx status when refused;
nothing changes then):

- ``GET /api/overview``
- ``GET /api/runs?state=&name=&since=&limit=`` (``since``: a date or a
  duration back from now, as ``coda runs --since``)
- ``GET /api/runs/ID``: the run and its steps
- ``POST /api/runs/ID/cancel``

``create_app(source, extra_routes=...)`` mounts more routes (``/metrics``)
behind the same access rules.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from .._cli_views import parse_since
from ..errors import RequestRefusedError
from .access import AccessMiddleware, Throttle
from .source import RunSource
from .views import JSON, error_response, run_dict, show_dict

__all__ = ["DEFAULT_LIMIT", "STATIC", "create_app"]

STATIC = Path(__file__).with_name("static")
DEFAULT_LIMIT = 50
_STATUS = {"not_found": 404, "already_finished": 409, "bad_filter": 400}


def create_app(
    source: RunSource,
    *,
    token: str | None = None,
    throttle: Throttle | None = None,
    extra_routes: Sequence[BaseRoute] = (),
) -> Starlette:
    api = _Api(source)
    routes: list[BaseRoute] = [
        Route("/", _page("index.html")),
        Route("/runs", _page("runs.html")),
        Route("/runs/{run_id}", _page("run.html")),
        Route("/api/overview", api.overview),
        Route("/api/runs", api.runs),
        Route("/api/runs/{run_id}", api.run),
        Route("/api/runs/{run_id}/cancel", api.cancel, methods=["POST"]),
        *extra_routes,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(AccessMiddleware, token=token, throttle=throttle)]
    handlers = {404: _not_found, 405: _not_allowed}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


def _page(name: str) -> Callable[[Request], Awaitable[Response]]:
    path = STATIC / name

    async def page(request: Request) -> Response:
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    return page


async def _not_found(request: Request, exc: Exception) -> Response:
    return error_response(request, 404, "not_found", f"nothing at {request.url.path}")


async def _not_allowed(request: Request, exc: Exception) -> Response:
    return error_response(
        request,
        405,
        "method_not_allowed",
        f"{request.method} is not accepted at {request.url.path} (a change is a POST)",
    )


class _Api:
    def __init__(self, source: RunSource) -> None:
        self.source = source

    async def overview(self, request: Request) -> Response:
        return JSON(self.source.overview())

    async def runs(self, request: Request) -> Response:
        query = request.query_params
        try:
            since = _since(query.get("since"))
            limit = _limit(query.get("limit"))
            runs = self.source.list_runs(
                state=query.get("state") or None,
                name=query.get("name") or None,
                since=since,
                limit=limit,
            )
        except RequestRefusedError as exc:
            return _refused(request, exc)
        return JSON({"runs": [run_dict(run) for run in runs], "now": time.time()})

    async def run(self, request: Request) -> Response:
        try:
            run, steps = self.source.run(request.path_params["run_id"])
        except RequestRefusedError as exc:
            return _refused(request, exc)
        return JSON(show_dict(run, steps, time.time()))

    async def cancel(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            state = await self.source.cancel(run_id)
        except RequestRefusedError as exc:
            return _refused(request, exc)
        return JSON({"run_id": run_id, "state": state})


def _refused(request: Request, exc: RequestRefusedError) -> Response:
    return error_response(request, _STATUS.get(exc.code, 400), exc.code, exc.message)


def _since(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return parse_since(value, time.time())
    except ValueError as exc:
        raise RequestRefusedError("bad_filter", f"since: {exc}") from None


def _limit(value: str | None) -> int:
    if not value:
        return DEFAULT_LIMIT
    try:
        return int(value)
    except ValueError:
        raise RequestRefusedError(
            "bad_filter", f"limit must be a whole number, got {value!r}"
        ) from None
