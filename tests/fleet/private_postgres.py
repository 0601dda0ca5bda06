"""A PostgreSQL server of a test's own, so the test may restart it.

The machine's server (tests/postgres.py) is shared by every test running in
parallel; a test that restarts PostgreSQL starts its own with the machine's
binaries: ``initdb`` into a temporary folder owned by the ``postgres`` user
(the server refuses to run as root), on a free port, stopped at the end.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

from tests.broker.processes import free_port

__all__ = ["PrivatePostgres", "private_postgres"]

BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]


@dataclass
class PrivatePostgres:
    folder: str
    port: int
    extra_options: str = ""  # server settings (-c name=value ...)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [
                "runuser",
                "-u",
                "postgres",
                "--",
                f"{BIN}/pg_ctl",
                "-D",
                f"{self.folder}/data",
                "-l",
                f"{self.folder}/log",
                *args,
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
        options += self.extra_options
        self.ctl("-o", options, "-w", "start")

    def restart(self) -> None:
        """Stop it fast (connections are cut) and start it again."""
        self.ctl("-m", "fast", "-w", "stop")
        self.start()


@contextlib.contextmanager
def private_postgres(extra_options: str = "") -> Iterator[PrivatePostgres]:
    folder = tempfile.mkdtemp(prefix="coda-pg-")
    owner = pwd.getpwnam("postgres")
    os.chown(folder, owner.pw_uid, owner.pw_gid)
    server = PrivatePostgres(folder, free_port(), extra_options)
    subprocess.run(
        [
            "runuser",
            "-u",
            "postgres",
            "--",
            f"{BIN}/initdb",
            "-D",
            f"{folder}/data",
            "-A",
            "trust",
            "-U",
            "postgres",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            server.ctl("-m", "immediate", "stop")
        shutil.rmtree(folder, ignore_errors=True)
