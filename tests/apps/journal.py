"""A file of lines that task bodies append to, so a test can count
executions across processes (Coda workers, Celery workers, the test)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["lines", "record"]


def record(path: str | None, line: str) -> int:
    """Append ``line`` to ``path``; return how many times it is there now."""
    if not path:
        return 0
    with open(path, "a") as log:
        log.write(line + "\n")
    return Path(path).read_text().splitlines().count(line)


def lines(path: str) -> list[str]:
    file = Path(path)
    return file.read_text().splitlines() if file.exists() else []
