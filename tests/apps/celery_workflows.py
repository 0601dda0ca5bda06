"""A Coda workflow calling adopted Celery tasks: ``spawn_task`` takes the task object."""

from __future__ import annotations

import coda
from tests.apps import celery_app


@coda.workflow()
async def add_then_double(x: int, y: int) -> int:
    total = await coda.context.spawn_task(celery_app.add, args={"x": x, "y": y}, cache_key=["add"])
    return await coda.context.spawn_task(
        celery_app.mul, args={"x": total, "y": 2}, cache_key=["double"]
    )
