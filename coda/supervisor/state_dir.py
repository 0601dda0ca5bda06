"""Where a supervisor keeps its state when no ``--store`` is given.

Not the working directory: a supervisor started from a project folder left
its SQLite files (the database, its WAL, shared memory and lock) there, and
one started from another folder silently began with an empty store. The
default is one per-user place, where the XDG base directory specification
puts state that must survive restarts: ``$XDG_STATE_HOME/coda/`` (when
``XDG_STATE_HOME`` is an absolute path), else ``~/.local/state/coda/``.
``--store`` / ``CODA_STORE`` picks any other file, or ``memory://``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .stores.sqlite.schema import parse_sqlite_url

__all__ = ["default_store_url", "describe_store", "state_dir"]

STATE_FILE = "state.sqlite3"


def state_dir() -> Path:
    """``$XDG_STATE_HOME/coda``, or ``~/.local/state/coda`` (the spec's default)."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):  # the spec says to ignore a relative value
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "coda"


def default_store_url() -> str:
    """The SQLite file in ``state_dir()``, as a ``--store`` URL."""
    return f"sqlite:///{state_dir() / STATE_FILE}"


def describe_store(url: str) -> str:
    """Where the state of ``url`` lives, for the start-up line: an absolute path."""
    if not url.startswith("sqlite:"):
        return "in memory (lost when the supervisor stops)"
    path, _ = parse_sqlite_url(url)
    return os.path.abspath(path)
