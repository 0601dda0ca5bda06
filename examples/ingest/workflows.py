"""The seed workflow: normalize an event, then store it.

Both steps carry ``cache_key=[event_id]``: if this workflow is rerun (it
raised, or its worker died), the steps that already finished return their
stored results instead of running again.

``pause`` (seconds, 0 by default) makes each step take that long, to watch
the run step by step on the dashboard (README, "Dashboard").
"""

from __future__ import annotations

from typing import Any

import coda

from .tasks import normalize_event, store_event


@coda.workflow()
async def process_event(
    project_id: int, event_data: dict[str, Any], pause: float = 0, **kwargs: Any
) -> Any:
    slow = {"pause": pause} if pause else {}
    event_data = await coda.context.spawn_task(
        normalize_event,
        args={"project_id": project_id, "event_data": event_data, **slow},
        cache_key=[event_data["event_id"]],
    )
    return await coda.context.spawn_task(
        store_event,
        args={"project_id": project_id, "event_data": event_data, **slow},
        cache_key=[event_data["event_id"]],
    )
