"""Tasks that take or make large values: what finished work keeps in the
supervisor's memory, and values above the frame limit."""

from __future__ import annotations

import coda
from tests.apps.journal import record


@coda.task()
def length(blob: bytes) -> int:
    """Takes a large argument, returns a small result."""
    return len(blob)


@coda.task()
def make_blob(size: int, path: str) -> bytes:
    """Returns a result of ``size`` bytes; each run is journaled to ``path``."""
    record(path, "make_blob")
    return b"x" * size
