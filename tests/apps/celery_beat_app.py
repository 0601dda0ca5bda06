"""A Celery app with a ``beat_schedule``, run by a Coda supervisor with
``--celery-beat`` instead of ``celery beat``.

Its task appends what it received (task id, arguments, queue, the beat
header) to the journal named by ``CODA_TEST_BEAT_JOURNAL``, as JSON lines.
The broker is never used: the supervisor builds each tick's message and its
workers run it.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import Any

from celery import Celery, Task
from celery.schedules import crontab

from tests.apps.journal import record

JOURNAL = os.environ.get("CODA_TEST_BEAT_JOURNAL", "")

app = Celery("tests.apps.celery_beat_app", broker="memory://", set_as_current=False)
app.conf.task_routes = {"tests.apps.celery_beat_app.nightly": {"queue": "maintenance"}}
app.conf.beat_schedule = {
    "report every second": {
        "task": "tests.apps.celery_beat_app.report",
        "schedule": timedelta(seconds=1),
        "args": (JOURNAL, "positional"),
        "kwargs": {"label": "keyword"},
        "options": {"queue": "beat-q"},
    },
    "nightly cleanup": {
        "task": "tests.apps.celery_beat_app.nightly",
        "schedule": crontab(minute=30, hour=3),
    },
}

if os.environ.get("CODA_TEST_BEAT_FOREIGN"):  # an entry for another service's task
    app.conf.beat_schedule["foreign"] = {"task": "billing.invoice", "schedule": 60}


@app.task(bind=True, shared=False)
def report(self: Task, journal: str, value: str, label: str = "") -> None:
    request = self.request
    seen: dict[str, Any] = {
        "id": request.id,
        "value": value,
        "label": label,
        "routing_key": (request.delivery_info or {}).get("routing_key"),
        "beat": getattr(request, "celery_beat_task", None),
    }
    record(journal, json.dumps(seen))


@app.task(shared=False)
def nightly() -> None:
    """Never due during a test: its next tick shows in the status."""
