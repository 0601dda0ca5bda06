"""A task whose side effect comes only at its end, so a test can tell a
worker that was stopped midway (nothing written) from one that finished."""

from __future__ import annotations

import os
import time
from pathlib import Path

import coda


@coda.task()
def sleep_then_write(path: str, seconds: float) -> str:
    """Writes ``path.started`` (holding this worker's pid) at once and
    ``path`` after ``seconds``."""
    Path(f"{path}.started").write_text(str(os.getpid()))
    time.sleep(seconds)  # the task's own work, not a wait in a test
    Path(path).write_text("finished")
    return path
