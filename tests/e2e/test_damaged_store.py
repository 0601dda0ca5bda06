"""A damaged or truncated store file is refused at start with one line that
says what to do; a damaged shared-memory index is survived."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from coda.testing import SupervisorProcess

pytestmark = pytest.mark.e2e

PAGE = 4096


def start(store: Path) -> subprocess.CompletedProcess[str]:
    """``coda supervisor`` on ``store``; it must exit on its own (refusal)."""
    argv = [sys.executable, "-m", "coda", "supervisor", "--workers", "0"]
    argv += ["--listen", "127.0.0.1:0", "--store", f"sqlite:///{store}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60)


def filled_store(tmp_path: Path) -> Path:
    """A store holding a few hundred finished runs, written by a real supervisor."""
    store = tmp_path / "state.sqlite3"
    url = f"sqlite:///{store}"
    with SupervisorProcess(["tests.apps.basic"], workers=1, store=url) as sup, sup.client() as c:
        handles = [c.submit("tests.apps.basic.add", {"x": i, "y": 1}) for i in range(300)]
        assert [h.result(timeout=60) for h in handles] == [i + 1 for i in range(300)]
    with sqlite3.connect(store) as db:  # fold the WAL into the file
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return store


def test_a_store_with_damaged_pages_is_refused_with_what_to_do(tmp_path: Path) -> None:
    store = filled_store(tmp_path)
    pages = store.stat().st_size // PAGE
    assert pages > 4
    with store.open("r+b") as file:  # garbage over the middle of two pages
        for page in (pages // 2, pages - 2):
            file.seek(page * PAGE + 100)
            file.write(os.urandom(PAGE - 200))
    outcome = start(store)
    assert outcome.returncode != 0
    last = outcome.stderr.strip().splitlines()[-1]
    assert "is damaged" in last and "restore it from a backup" in last
    assert "Traceback" not in outcome.stderr


def test_an_empty_store_file_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "state.sqlite3"
    store.touch()
    outcome = start(store)
    assert outcome.returncode != 0
    assert "is an empty file, not a Coda store" in outcome.stderr
    assert "Traceback" not in outcome.stderr


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "state.sqlite3"
    store.write_bytes(b"this is not SQLite\n" * 400)
    outcome = start(store)
    assert outcome.returncode != 0
    assert "Traceback" not in outcome.stderr
    assert str(store) in outcome.stderr.strip().splitlines()[-1]


def test_a_damaged_shared_memory_index_is_replaced_at_start_not_trusted(tmp_path: Path) -> None:
    """A damaged ``-shm`` once killed the supervisor by SIGBUS: at start,
    holding the store's lock, the supervisor removes the old index (SQLite
    rebuilds it from the WAL), so the damaged file is never mapped. The
    index seen after the start is a new file, not the damaged one."""
    store = filled_store(tmp_path)
    shm = Path(f"{store}-shm")
    shm.write_bytes(os.urandom(PAGE * 8))
    damaged = shm.stat().st_ino
    keep_inode_in_use = shm.open("rb")  # the inode number cannot be reused meanwhile
    url = f"sqlite:///{store}"
    try:
        with SupervisorProcess(["tests.apps.basic"], workers=1, store=url) as sup:
            with sup.client() as c:
                assert c.run("tests.apps.basic.add", {"x": 2, "y": 3}, timeout=30) == 5
            assert shm.stat().st_ino != damaged
    finally:
        keep_inode_in_use.close()
