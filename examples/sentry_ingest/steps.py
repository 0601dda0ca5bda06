"""The four step bodies, shared verbatim by the Celery chain and the Coda workflow.

Each takes and returns the event dict: where the event lives between steps
(Redis keys before, workflow results after) is the caller's business. Two
environment variables let tests observe and interrupt them:

- ``INGEST_DB``: the SQLite file events are saved to (the "Postgres" of the
  example); ``save`` is idempotent on ``(project_id, event_id)``, as Sentry's
  is on the event id, because any step may run again after a crash;
- ``INGEST_STATE_DIR``: where steps log their runs (``steps.log``), where the
  flaky symbolicator counts attempts, and where the ``process`` step can be
  held (a named fault-injection point: ``pause_here``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = ["SymbolicatorUnavailable", "preprocess", "process", "save", "saved", "symbolicate"]

Event = dict[str, Any]


class SymbolicatorUnavailable(ConnectionError):
    """The symbol server did not answer; worth retrying."""


def _state_dir() -> Path | None:
    path = os.environ.get("INGEST_STATE_DIR")
    return Path(path) if path else None


def log_step(step: str, event_id: str) -> None:
    state = _state_dir()
    if state is not None:
        with open(state / "steps.log", "a") as log:
            log.write(f"{step} {event_id}\n")


def pause_here(point: str) -> None:
    """Fault-injection point: if ``<state>/hold-<point>`` exists, write our pid to
    ``<state>/<point>.pid`` and wait until the hold file is removed."""
    state = _state_dir()
    if state is None or not (state / f"hold-{point}").exists():
        return
    (state / f"{point}.pid").write_text(str(os.getpid()))
    deadline = time.monotonic() + 60
    while (state / f"hold-{point}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def preprocess(project_id: int, event: Event) -> Event:
    """Normalise keys and message, stamp the project."""
    log_step("preprocess", event["event_id"])
    normalized = {key.lower(): value for key, value in event.items()}
    normalized["message"] = " ".join(str(normalized.get("message", "")).split())
    normalized["level"] = str(normalized.get("level", "error")).lower()
    normalized["project_id"] = project_id
    return normalized


def symbolicate(project_id: int, event: Event) -> Event:
    """Resolve frame addresses to function names; the symbol server is flaky:
    it fails the first ``event["symbolicator_failures"]`` attempts."""
    log_step("symbolicate", event["event_id"])
    state = _state_dir()
    failures = int(event.get("symbolicator_failures", 0))
    if state is not None and failures:
        attempts = state / f"symbolicator-{event['event_id']}"
        seen = int(attempts.read_text()) if attempts.exists() else 0
        attempts.write_text(str(seen + 1))
        if seen < failures:
            raise SymbolicatorUnavailable(f"symbolicator timed out (attempt {seen + 1})")
    frames = [dict(frame, function=f"fn_{frame['addr']}") for frame in event.get("frames", [])]
    return {**event, "frames": frames, "symbolicated": True}


def process(project_id: int, event: Event) -> Event:
    """Group the event: a fingerprint from its message and top frame."""
    log_step("process", event["event_id"])
    pause_here("process")
    top = event["frames"][0]["function"] if event.get("frames") else ""
    digest = hashlib.sha1(f"{event['message']}|{top}".encode()).hexdigest()
    return {**event, "fingerprint": digest[:16]}


def _db() -> sqlite3.Connection:
    db = sqlite3.connect(os.environ.get("INGEST_DB", "ingest-events.sqlite3"), timeout=30)
    db.execute(
        "CREATE TABLE IF NOT EXISTS events (project_id INTEGER, event_id TEXT, data TEXT,"
        " PRIMARY KEY (project_id, event_id))"
    )
    return db


def save(project_id: int, event: Event) -> str:
    """Store the event once: a second save of the same event changes nothing."""
    log_step("save", event["event_id"])
    with _db() as db:
        db.execute(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?)",
            (project_id, event["event_id"], json.dumps(event, sort_keys=True)),
        )
    return str(event["event_id"])


def saved(project_id: int, event_id: str) -> list[Event]:
    """Every stored copy of an event (a correct pipeline leaves exactly one)."""
    with _db() as db:
        rows = db.execute(
            "SELECT data FROM events WHERE project_id = ? AND event_id = ?", (project_id, event_id)
        ).fetchall()
    return [json.loads(row[0]) for row in rows]
