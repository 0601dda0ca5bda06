"""The supervisor process: listeners, worker pool, scheduler and store together."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from .. import registry
from .._wire import parse_address
from ..decorators import DEFAULT_QUEUE
from ..errors import ConfigurationError
from ..protocol import DEFAULT_FRAME_LIMIT
from ..serialization import registry as serializers
from .memory_store import MemoryStore
from .pool import WorkerPool, WorkerSettings
from .scheduler import NameInfo, Scheduler, new_id
from .server import SupervisorConnection
from .store import Store

__all__ = ["Supervisor", "SupervisorConfig"]

log = logging.getLogger("coda.supervisor")

SAFE_CONTENT = ("json", "msgpack")


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything ``coda supervisor`` accepts on its command line."""

    modules: tuple[str, ...] = ()
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    listen: str | None = "127.0.0.1:42069"
    unix_socket: str | None = None
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    concurrency: int = 1
    workflow_slots: int = 100
    token: str | None = None
    accept_pickle: bool = False
    frame_limit: int = DEFAULT_FRAME_LIMIT
    result_ttl: float = 24 * 3600.0
    store: str = "memory://"

    def check(self) -> None:
        if self.workers < 0:
            raise ConfigurationError(f"--workers must be >= 0, got {self.workers}")
        if self.concurrency < 1 or self.workflow_slots < 1:
            raise ConfigurationError("--concurrency and --workflow-slots must be >= 1")
        if self.listen is None and self.unix_socket is None:
            raise ConfigurationError("give --listen HOST:PORT, --unix PATH or both")
        if self.listen is not None:
            _, (host, _port) = parse_address(self.listen)
            if not _is_loopback(host) and not self.token:
                raise ConfigurationError(
                    f"refusing to listen on {host!r} without a token: set --token or "
                    "CODA_TOKEN, or listen on a loopback address"
                )
        if not queue_names_ok(self.queues):
            raise ConfigurationError(f"invalid --queues {self.queues!r}")


def queue_names_ok(queues: tuple[str, ...]) -> bool:
    return bool(queues) and all(q and not any(c.isspace() for c in q) for q in queues)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_store(url: str) -> Store:
    if url in ("memory://", "memory"):
        return MemoryStore()
    raise ConfigurationError(f"unknown store {url!r}; this build supports memory://")


class Supervisor:
    """Run with ``await start()`` … ``await stop()``, or ``run()`` to block."""

    def __init__(self, config: SupervisorConfig) -> None:
        config.check()
        self.config = config
        self.id = new_id()[:12]
        registry.import_modules(list(config.modules))
        self.store = open_store(config.store)
        accept = set(SAFE_CONTENT) | ({"pickle"} if config.accept_pickle else set())
        self.scheduler = Scheduler(
            self.store,
            self._lookup,
            accept_content=frozenset(serializers.content_type_for(n) for n in accept),
            on_hung_worker=self._kill_worker,
        )
        self.pool = WorkerPool(
            config.workers,
            WorkerSettings(
                modules=config.modules,
                queues=config.queues,
                task_slots=config.concurrency,
                workflow_slots=config.workflow_slots,
                extra_args=("--accept-pickle",) if config.accept_pickle else (),
            ),
            self._attach_worker,
        )
        self.addresses: list[str] = []
        self.started_at = time.time()
        self._servers: list[asyncio.Server] = []
        self._stopped = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None

    @staticmethod
    def _lookup(name: str) -> NameInfo:
        return registry.get_spec(name)

    def _kill_worker(self, worker_id: int) -> None:
        self.pool.kill(worker_id)

    async def _attach_worker(self, sock: socket.socket, worker_id: int) -> None:
        loop = asyncio.get_running_loop()
        await loop.connect_accepted_socket(lambda: SupervisorConnection(self, worker_id), sock)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        recovered = self.scheduler.recover()
        if recovered:
            log.info("recovered %d unfinished jobs from the store", recovered)
        if self.config.listen is not None:
            _, (host, port) = parse_address(self.config.listen)
            server = await loop.create_server(lambda: SupervisorConnection(self), host, port)
            bound = server.sockets[0].getsockname()
            self.addresses.append(f"{bound[0]}:{bound[1]}")
            self._servers.append(server)
        if self.config.unix_socket is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.config.unix_socket)
            server = await loop.create_unix_server(
                lambda: SupervisorConnection(self), self.config.unix_socket
            )
            self.addresses.append(self.config.unix_socket)
            self._servers.append(server)
        await self.pool.start()
        self._housekeeping = asyncio.create_task(self._expire_periodically())

    async def _expire_periodically(self) -> None:
        interval = min(60.0, max(1.0, self.config.result_ttl / 10))
        while True:
            await asyncio.sleep(interval)
            dropped = self.scheduler.expire(self.config.result_ttl)
            if dropped:
                log.info("expired %d finished jobs", dropped)

    async def stop(self) -> None:
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        for server in self._servers:
            server.close()
        await self.pool.stop()
        self.store.close()
        self._stopped.set()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def status(self) -> dict[str, Any]:
        status = self.scheduler.status()
        status["supervisor"] = {
            "id": self.id,
            "pid": os.getpid(),
            "addresses": self.addresses,
            "uptime": round(time.time() - self.started_at, 1),
            "worker_processes": self.config.workers,
            "worker_restarts": self.pool.restarts,
        }
        return status

    def run(self, ready_line: bool = True) -> None:
        """Serve until SIGINT or SIGTERM."""
        asyncio.run(self._main(ready_line))

    async def _main(self, ready_line: bool) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        if ready_line:
            print(f"coda supervisor ready on {' and '.join(self.addresses)}", flush=True)
        await stopping.wait()
        log.info("shutting down")
        await self.stop()
        sys.stdout.flush()
