"""The dashboard's JSON: runs and steps as the pages draw them, and errors.

Steps reuse the CLI's pure helpers (``coda._cli_views``): whether a step was
answered from the cache, how it came to be (``step_origin``), its cache key
as text. Values that JSON cannot hold (bytes in a cache key) become strings.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .._cli_views import describe_cache_key, job_dict, step_origin
from ..messages import JobView

__all__ = ["JSON", "error_response", "run_dict", "show_dict"]


class JSON(JSONResponse):
    """JSON that turns what it cannot encode into strings, not errors."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, default=str, separators=(",", ":")).encode()


def error_response(request: Request, status: int, code: str, message: str) -> Response:
    """One clear line: ``{"error": {"code", "message"}}`` under /api/, text elsewhere."""
    if request.url.path.startswith("/api/"):
        return JSON({"error": {"code": code, "message": message}}, status_code=status)
    return PlainTextResponse(f"{code}: {message}\n", status_code=status)


def run_dict(run: JobView) -> dict[str, Any]:
    data = job_dict(run)
    data["cache_key_text"] = describe_cache_key(run.cache_key)
    return data


def step_dict(step: JobView, run: JobView) -> dict[str, Any]:
    data = job_dict(step, run)
    data["cache_key_text"] = describe_cache_key(step.cache_key)
    data["origin"] = step_origin(step, run)
    return data


def show_dict(run: JobView, steps: Sequence[JobView], now: float) -> dict[str, Any]:
    return {
        "run": run_dict(run),
        "steps": [step_dict(step, run) for step in steps],
        "now": now,
    }
