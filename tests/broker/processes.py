"""Real processes for the broker's end-to-end tests and the fault harness: a
stock ``celery worker``, and a broker-only supervisor restarted on its store."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from coda.testing import SupervisorProcess, wait_until

__all__ = [
    "CeleryWorker",
    "RestartableBroker",
    "broker_queue",
    "free_port",
    "start_logged",
    "stop_group",
]

ROOT = Path(__file__).resolve().parents[2]


class CeleryWorker:
    """``celery -A tests.apps.broker_app worker -P prefork`` in its own process group
    (``app`` names another app module; ``env`` adds to or overrides its environment,
    e.g. ``CODA_BROKER_URL``)."""

    def __init__(
        self,
        address: str,
        log: Path,
        *,
        queues: str = "celery",
        concurrency: int = 2,
        app: str = "tests.apps.broker_app",
        env: dict[str, str] | None = None,
    ):
        self.log = log
        self.name = f"w{uuid.uuid4().hex[:8]}@%h"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            app,
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-l",
            "info",
            "-Q",
            queues,
            "-n",
            self.name,
        ]
        env = {**os.environ, "CODA_BROKER_URL": f"coda://{address}", **(env or {})}
        env.pop("CODA_RESULT_BACKEND", None)
        self.process = start_logged(argv, env, log)
        wait_until(self._ready, timeout=60, interval=0.05, what=f"celery worker ready ({log})")

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"celery worker exited:\n{self.output()}")
        return " ready." in self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL the whole process group: the main process and its pool."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        stop_group(self.process)


def start_logged(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``argv`` from the checkout's root, in a process group of its own (so
    its children can be stopped with it), stdout and stderr into ``log``."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_group(process: subprocess.Popen[bytes], grace: float = 15) -> None:
    """SIGTERM to the process group, then SIGKILL if it is not gone within ``grace``."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RestartableBroker:
    """``coda supervisor --workers 0`` on a SQLite store and a fixed port,
    stopped (SIGTERM) or killed (SIGKILL of its process group) and started
    again on both, as an operator or a crash would."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.address = f"127.0.0.1:{free_port()}"
        self.store = f"sqlite:///{folder / 'state.sqlite3'}"
        self.restarts = 0
        self.current = self._start()

    def _start(self) -> SupervisorProcess:
        with open(self.folder / "supervisor.log", "ab") as log:
            return SupervisorProcess(
                [], workers=0, listen=self.address, store=self.store, stderr=log
            )

    def kill(self) -> None:
        self.current.kill()
        self.current.close()

    def terminate(self) -> int | None:
        """SIGTERM; the exit status once it has stopped."""
        return self.current.close(timeout=60)

    def start(self) -> None:
        self.current = self._start()
        self.restarts += 1

    def status(self) -> dict[str, Any]:
        return self.current.status()

    def queue(self, name: str) -> dict[str, int]:
        return broker_queue(self.current, name)

    def close(self) -> None:
        self.current.close()


def broker_queue(broker: SupervisorProcess, name: str) -> dict[str, int]:
    queues: dict[str, dict[str, int]] = broker.status()["broker"]["queues"]
    return queues.get(name, {"ready": 0, "held": 0, "unacked": 0, "consumers": 0})
