"""The supervisor process: listeners, worker pool, scheduler and store together."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import os
import signal
import socket
import sys
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .. import registry
from .._event_loop import run_event_loop
from .._tls import check_server_options, listener_options
from .._wire import parse_address
from ..decorators import DEFAULT_QUEUE
from ..errors import CodaError, ConfigurationError
from ..protocol import DEFAULT_FRAME_LIMIT
from ..serialization import registry as serializers
from .broker_divert import Diverter, DivertRules
from .broker_service import BrokerService
from .memory_store import MemoryStore
from .pool import WorkerPool, WorkerSettings
from .scheduler import NameInfo, Scheduler, new_id
from .server import SupervisorConnection
from .sqlite_store import SqliteStore
from .store import Store

__all__ = ["Supervisor", "SupervisorConfig"]

log = logging.getLogger("coda.supervisor")

SAFE_CONTENT = ("json", "msgpack")

T = TypeVar("T")


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything ``coda supervisor`` accepts on its command line."""

    modules: tuple[str, ...] = ()
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    listen: str | None = "127.0.0.1:42069"
    unix_socket: str | None = None
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    concurrency: int = 1
    prefetch: int | None = None  # tasks sent beyond a worker's slots; None: 4 x concurrency
    workflow_slots: int = 100
    token: str | None = None
    tls_cert: str | None = None  # TLS on the TCP listener: certificate (PEM)
    tls_key: str | None = None  # its private key, unless in the certificate file
    tls_ca: str | None = None  # require client certificates signed by this CA
    accept_pickle: bool = False
    frame_limit: int = DEFAULT_FRAME_LIMIT
    result_ttl: float = 24 * 3600.0
    store: str = "memory://"
    shutdown_grace: float = 30.0  # seconds SIGTERM waits for running tasks
    celery_app: str | None = None  # "module:attribute" of a Celery app whose tasks to adopt
    # coda:// messages of adopted tasks that Coda workers take: "*", "queue:NAME", task names
    celery_divert: tuple[str, ...] = ()

    def check(self) -> None:
        if self.workers < 0:
            raise ConfigurationError(f"--workers must be >= 0, got {self.workers}")
        if self.concurrency < 1 or self.workflow_slots < 1:
            raise ConfigurationError("--concurrency and --workflow-slots must be >= 1")
        if self.prefetch is not None and self.prefetch < 0:
            raise ConfigurationError(f"--prefetch must be >= 0, got {self.prefetch}")
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
        check_server_options(self.tls_cert, self.tls_key, self.tls_ca, tcp=self.listen is not None)

    @property
    def task_prefetch(self) -> int:
        return 4 * self.concurrency if self.prefetch is None else self.prefetch


def queue_names_ok(queues: tuple[str, ...]) -> bool:
    return bool(queues) and all(q and not any(c.isspace() for c in q) for q in queues)


def _worker_args(config: SupervisorConfig) -> tuple[str, ...]:
    args: tuple[str, ...] = ("--accept-pickle",) if config.accept_pickle else ()
    if config.celery_app:
        args += ("--celery-app", config.celery_app)
    return args


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_store(url: str) -> Store:
    """``memory://`` (gone on exit) or ``sqlite:///relative.db`` /
    ``sqlite:////absolute.db`` (durable; see sqlite_store.py)."""
    if url in ("memory://", "memory"):
        return MemoryStore()
    if url.startswith("sqlite:"):
        return SqliteStore.from_url(url)
    raise ConfigurationError(
        f"unknown store {url!r}: use memory:// or sqlite:///path/to/file.sqlite3"
    )


class Supervisor:
    """Run with ``await start()`` … ``await stop()``, or ``run()`` to block."""

    def __init__(self, config: SupervisorConfig) -> None:
        config.check()
        self.config = config
        self.id = new_id()[:12]
        registry.import_modules(list(config.modules))
        if config.celery_app:
            registry.adopt_celery_app(config.celery_app)
        self.store = open_store(config.store)
        accept = set(SAFE_CONTENT) | ({"pickle"} if config.accept_pickle else set())
        self.scheduler = Scheduler(
            self.store,
            self._lookup,
            accept_content=frozenset(serializers.content_type_for(n) for n in accept),
            on_hung_worker=self._kill_worker,
        )
        self.broker = BrokerService(  # kombu/Celery: coda://
            result_ttl=config.result_ttl, divert=self._diverter(config)
        )
        self.pool = WorkerPool(
            config.workers,
            WorkerSettings(
                modules=config.modules,
                queues=config.queues,
                task_slots=config.concurrency,
                workflow_slots=config.workflow_slots,
                extra_args=_worker_args(config),
            ),
            self._attach_worker,
        )
        self.addresses: list[str] = []
        self.started_at = time.time()
        self._servers: list[asyncio.Server] = []
        self._stopped = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None
        self._worker_conns: weakref.WeakSet[SupervisorConnection] = weakref.WeakSet()

    def _diverter(self, config: SupervisorConfig) -> Diverter | None:
        rules = DivertRules.parse(config.celery_divert)
        if not rules:
            return None
        if not config.celery_app:
            raise ConfigurationError("--celery-divert needs --celery-app")

        def adopted(name: str) -> bool:
            try:
                return registry.get_spec(name).kind == "task"
            except CodaError:
                return False

        return Diverter(rules, self.scheduler.submit, adopted)

    @staticmethod
    def _lookup(name: str) -> NameInfo:
        return registry.get_spec(name)

    def _kill_worker(self, worker_id: int) -> None:
        self.pool.kill(worker_id)

    async def _attach_worker(self, sock: socket.socket, worker_id: int) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.connect_accepted_socket(
            lambda: SupervisorConnection(self, worker_id), sock
        )
        self._worker_conns.add(conn)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        recovered = self.scheduler.recover()
        if recovered:
            log.info("recovered %d unfinished jobs from the store", recovered)
        if self.config.listen is not None:
            _, (host, port) = parse_address(self.config.listen)
            tls = listener_options(self.config.tls_cert, self.config.tls_key, self.config.tls_ca)
            server = await loop.create_server(lambda: SupervisorConnection(self), host, port, **tls)
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
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            expired: asyncio.Future[int] = loop.create_future()
            self.scheduler.expire(self.config.result_ttl, functools.partial(_resolve, expired))
            dropped = await expired
            if dropped:
                log.info("expired %d finished jobs", dropped)

    async def drain(self, grace: float) -> None:
        """The first half of a graceful shutdown: refuse new clients and
        submits, start no job, and give the tasks running on workers up to
        ``grace`` seconds to finish and be answered. What is left (queued
        jobs, workflows mid-run, tasks past the grace) stays unfinished in
        the store, for the next supervisor on it to run."""
        loop = asyncio.get_running_loop()
        idle: asyncio.Future[None] = loop.create_future()
        self.scheduler.drain(lambda: _resolve(idle, None))
        try:
            await asyncio.wait_for(idle, grace)
        except TimeoutError:
            log.warning(
                "%d tasks still running after the %.0fs grace: they run again after a restart",
                self.scheduler.in_flight(),
                grace,
            )
        committed: asyncio.Future[None] = loop.create_future()
        self.store.after_commit(lambda: _resolve(committed, None))
        await committed
        await asyncio.sleep(0)  # the answers just released go out at the end of this turn

    async def stop(self) -> None:
        """Stop now (``drain`` first for a graceful stop). The workers'
        connections are closed before the store, so the jobs they held are
        saved as requeued (without counting a loss: we are draining)."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
        if not self.scheduler.draining:
            self.scheduler.drain(lambda: None)
        for server in self._servers:
            server.close()
        await self.pool.stop()
        conns = [conn for conn in self._worker_conns if not conn.closed.is_set()]
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.closed.wait() for conn in conns))
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
        status["broker"] = self.broker.statistics()
        return status

    def run(self, ready_line: bool = True) -> None:
        """Serve until SIGINT or SIGTERM, on uvloop when it is installed."""
        run_event_loop(self._main(ready_line))

    async def _main(self, ready_line: bool) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        if ready_line:
            print(f"coda supervisor ready on {' and '.join(self.addresses)}", flush=True)
        await stopping.wait()
        stopping.clear()
        grace = self.config.shutdown_grace
        log.info("shutting down: draining for up to %.0fs (signal again to stop now)", grace)
        draining = asyncio.create_task(self.drain(grace))
        again = asyncio.create_task(stopping.wait())
        await asyncio.wait((draining, again), return_when=asyncio.FIRST_COMPLETED)
        draining.cancel()
        again.cancel()
        await self.stop()
        sys.stdout.flush()


def _resolve(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)
