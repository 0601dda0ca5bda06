"""A Celery app on ``coda://`` whose module does not import ``coda.compat.kombu``
(the line people forget): ``coda supervisor --celery-app`` must make its
``coda://`` URL work in Coda workers all the same."""

from __future__ import annotations

import os

from celery import Celery

app = Celery("tests.apps.forgot_import", broker=os.environ.get("CODA_BROKER_URL"))
app.conf.update(broker_connection_retry_on_startup=True, worker_hijack_root_logger=False)


@app.task
def hand_on(queue: str) -> str:
    """Publishes ``follow_up`` through the app's ``coda://`` broker."""
    follow_up.apply_async(queue=queue)
    return "handed on"


@app.task
def follow_up() -> None:
    pass
