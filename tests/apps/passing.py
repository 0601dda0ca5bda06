"""Workflows that pass a large step result on, untouched or changed."""

from __future__ import annotations

from typing import Any

import coda


@coda.task()
def grow(size: int) -> dict[str, Any]:
    return {"id": "e1", "frames": [{"line": i, "text": "x" * 40} for i in range(size)]}


@coda.task()
def mark(event: dict[str, Any], label: str) -> dict[str, Any]:
    event.setdefault("marks", []).append(label)
    return event


@coda.task()
def summary(event: dict[str, Any]) -> list[Any]:
    return [event["id"], len(event["frames"]), event.get("marks", []), event.get("seen")]


@coda.workflow()
async def pass_along(size: int, touch: bool) -> list[Any]:
    event = await coda.context.spawn_task(grow, args={"size": size})
    event = await coda.context.spawn_task(mark, args={"event": event, "label": "a"})
    if touch:
        event["seen"] = len(event["frames"])  # used and changed here: sent as changed
    event = await coda.context.spawn_task(mark, args={"event": event, "label": "b"})
    return list(await coda.context.spawn_task(summary, args={"event": event}))
