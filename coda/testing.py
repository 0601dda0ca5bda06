"""Start a real supervisor for tests and scripts (public API).

``SupervisorProcess`` runs ``coda supervisor`` as a subprocess and waits for
its ready line; ``InProcessSupervisor`` runs one on a background thread of
this process. Both listen on a free loopback port by default and stop on
``close()`` or at the end of a ``with`` block.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from .client import Client
from .errors import CodaError
from .supervisor import Supervisor, SupervisorConfig

__all__ = ["InProcessSupervisor", "SupervisorProcess", "wait_until"]

READY = re.compile(r"coda supervisor ready on (\S+)")
DASHBOARD = re.compile(r"coda dashboard on (\S+)")


def wait_until(
    predicate: Any, timeout: float = 30.0, interval: float = 0.02, what: str = ""
) -> Any:
    """Poll ``predicate`` until it returns something truthy, or fail loudly."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


class SupervisorProcess:
    """``with SupervisorProcess(["tests.apps.basic"], workers=2) as sup: sup.client()``.

    ``store``: the supervisor's ``--store`` URL. By default each instance
    gets a SQLite file of its own in a temporary directory (removed on
    ``close()``), so tests run on the durable store, as production does,
    without sharing state; pass a URL to restart on the same store.
    """

    def __init__(
        self,
        modules: Sequence[str] = (),
        *,
        workers: int = 2,
        extra_args: Sequence[str] = (),
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
        ready_timeout: float = 60.0,
        stderr: IO[bytes] | int | None = None,
        store: str | None = None,
    ) -> None:
        argv = [sys.executable, "-m", "coda", "supervisor", "--workers", str(workers)]
        argv += ["--listen", listen]
        for module in modules:
            argv += ["-A", module]
        self._store_dir: str | None = None
        if store is None and "--store" not in extra_args:
            self._store_dir = tempfile.mkdtemp(prefix="coda-store-")
            store = f"sqlite:///{self._store_dir}/state.sqlite3"
        if store is not None:
            argv += ["--store", store]
        argv += list(extra_args)
        self.argv = argv
        self.dashboard_url: str | None = None  # with --http: its URL, from the dashboard line
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.address = self._wait_ready(ready_timeout)
        self._clients: list[Client] = []

    def _wait_ready(self, timeout: float) -> str:
        assert self.process.stdout is not None
        lines: list[str] = []
        reader = threading.Thread(target=self._read_lines, args=(lines,), daemon=True)
        reader.start()
        reader.join(timeout)
        for line in lines:
            dashboard = DASHBOARD.search(line)
            if dashboard:
                self.dashboard_url = dashboard.group(1)
            match = READY.search(line)
            if match:
                return match.group(1)
        self.kill()
        raise CodaError(f"supervisor did not become ready: {' '.join(self.argv)}\n{''.join(lines)}")

    def _read_lines(self, lines: list[str]) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            line = raw.decode(errors="replace")
            lines.append(line)
            if READY.search(line):
                return

    def client(self, **kwargs: Any) -> Client:
        client = Client(self.address, **kwargs)
        self._clients.append(client)
        return client

    def status(self) -> dict[str, Any]:
        with Client(self.address) as client:
            return client.status()

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.status()["workers"]]

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL the supervisor and everything in its session."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def close(self, timeout: float = 15.0) -> int | None:
        for client in self._clients:
            client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)  # stray workers, if any
        if self.process.stdout is not None:
            self.process.stdout.close()
        if self._store_dir is not None:
            shutil.rmtree(self._store_dir, ignore_errors=True)
        return self.process.returncode

    def __enter__(self) -> SupervisorProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class InProcessSupervisor:
    """A supervisor on a background thread of this process (its workers are
    still separate processes)."""

    def __init__(self, config: SupervisorConfig) -> None:
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.supervisor: Supervisor | None = None
        self._thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        assert self.supervisor is not None
        self.address = self.supervisor.addresses[0]

    def _run(self, config: SupervisorConfig) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.supervisor = Supervisor(config)
            self.loop.run_until_complete(self.supervisor.start())
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        self.loop.run_until_complete(self.supervisor.wait_stopped())

    def close(self) -> None:
        if self.supervisor is not None and self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.supervisor.stop(), self.loop).result(30)
            self._thread.join(30)

    def __enter__(self) -> InProcessSupervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
