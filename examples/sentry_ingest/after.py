"""After: the same step bodies as Coda tasks behind one workflow, no Redis.

The event is passed as arguments and returned as results; the supervisor
keeps each step's result under ``cache_key=[event_id]`` for this run. If the
workflow reruns (it raised, or the worker driving it died), finished steps
answer from that store and only the interrupted one runs again; a task whose
worker dies is requeued and run again by another worker. ``save`` is
idempotent on the event id, so "at least once" never means "saved twice".

Compared with ``before``: no ``e:{project_id}:{event_id}`` keys, no TTL, no
``EventLost``, no cleanup, and the flaky step's retries are the task's
``retry_on`` policy, run by the supervisor.
"""

from __future__ import annotations

from typing import Any

import coda

from . import steps


@coda.task()
def preprocess_event(project_id: int, event_data: dict[str, Any]) -> dict[str, Any]:
    return steps.preprocess(project_id, event_data)


@coda.task(retry_on=steps.SymbolicatorUnavailable, max_retries=3, retry_delay=0.2)
def symbolicate_event(project_id: int, event_data: dict[str, Any]) -> dict[str, Any]:
    return steps.symbolicate(project_id, event_data)


@coda.task()
def process_event(project_id: int, event_data: dict[str, Any]) -> dict[str, Any]:
    return steps.process(project_id, event_data)


@coda.task()
def save_event(project_id: int, event_data: dict[str, Any]) -> str:
    return steps.save(project_id, event_data)


@coda.workflow()
async def ingest_event(project_id: int, event_data: dict[str, Any]) -> str:
    key = [event_data["event_id"]]
    event = event_data
    for step in (preprocess_event, symbolicate_event, process_event):
        event = await coda.context.spawn_task(
            step, args={"project_id": project_id, "event_data": event}, cache_key=key
        )
    result: str = await coda.context.spawn_task(
        save_event, args={"project_id": project_id, "event_data": event}, cache_key=key
    )
    return result
