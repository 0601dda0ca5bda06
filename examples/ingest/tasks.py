"""The steps of the seed example: plain functions, decorated as tasks."""

from __future__ import annotations

import time
from typing import Any

import coda


@coda.task()
def normalize_event(
    project_id: int, event_data: dict[str, Any], pause: float = 0
) -> dict[str, Any]:
    """Lower-case the keys, trim the message and stamp the project."""
    time.sleep(pause)  # the workflow's pause=: a step slow enough to watch
    normalized = {key.lower(): value for key, value in event_data.items()}
    normalized["message"] = str(normalized.get("message", "")).strip()
    normalized["project_id"] = project_id
    return normalized


@coda.task(retry_on=(ConnectionError,), max_retries=3, retry_delay=0.2)
def store_event(project_id: int, event_data: dict[str, Any], pause: float = 0) -> dict[str, Any]:
    """Pretend to write the event; say where it went."""
    time.sleep(pause)
    return {
        "stored": True,
        "key": f"e:{project_id}:{event_data['event_id']}",
        "message": event_data["message"],
        "stored_at": round(time.time(), 3),
    }
