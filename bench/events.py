"""Synthetic Sentry-like events of a chosen encoded size.

Both sides of the chain benchmark push the same events, so the work of
(de)serialising them is the same shape: a dict of metadata and a list of
stack frames, grown until its JSON encoding reaches the requested size.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["make_events", "template"]


def template(size: int) -> dict[str, Any]:
    """An event whose JSON encoding is about ``size`` bytes (never less)."""
    event: dict[str, Any] = {
        "event_id": "0" * 32,
        "project_id": 1,
        "platform": "python",
        "level": "error",
        "message": "ZeroDivisionError: division by zero",
        "tags": [["environment", "production"], ["release", "bench@1.0.0"]],
        "frames": [],
    }
    index = 0
    while len(json.dumps(event)) < size:
        event["frames"].append(
            {
                "filename": f"app/module_{index}.py",
                "function": f"handler_{index}",
                "lineno": 100 + index,
                "context_line": "    result = numerator / denominator  # the bug",
                "in_app": index % 2 == 0,
            }
        )
        index += 1
    return event


def make_events(count: int, size: int) -> list[dict[str, Any]]:
    """``count`` events of about ``size`` bytes, each with its own id.

    The frames list is shared between them: events are only ever read by the
    sender, and every transport serialises its own copy.
    """
    base = template(size)
    return [{**base, "event_id": f"{index:032x}"} for index in range(count)]
