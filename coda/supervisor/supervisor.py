"""The supervisor process: listeners, worker pool, engine and store together."""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import functools
import logging
import os
import signal
import socket
import sys
import time
import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from .. import registry
from .._event_loop import run_event_loop
from .._malloc import return_large_blocks
from .._tls import listener_options
from .._wire import bind_failure, parse_address
from ..errors import CodaError
from ..serialization import registry as serializers
from .clock import LoopClock
from .config import SupervisorConfig
from .engine import Engine, NameInfo, new_id
from .extension import (
    ExtensionFactory,
    Extensions,
    discover_extensions,
)
from .fleet import Fleet, FleetMember, SharedStore
from .gate import ConnectionGate, capacity, descriptor_limit, raise_descriptor_limit
from .host import SupervisorHost
from .metrics import Metrics
from .pool import WorkerPool, WorkerSettings
from .quiet import Quieter, QuietLoopErrors
from .readmodel import ReadModel
from .scheduler import Scheduler
from .server import SupervisorConnection
from .state_dir import describe_store
from .stores import open_store
from .throttle import TokenThrottle

if TYPE_CHECKING:
    from starlette.routing import BaseRoute

    from ..dashboard import DashboardServer

__all__ = ["Supervisor", "SupervisorConfig"]

log = logging.getLogger("coda.supervisor")

SAFE_CONTENT = ("json", "msgpack")

T = TypeVar("T")


def _worker_args(config: SupervisorConfig) -> tuple[str, ...]:
    args: tuple[str, ...] = ("--frame-limit", str(config.frame_limit))
    if config.accept_pickle:
        args += ("--accept-pickle",)
    if config.celery_app:
        args += ("--celery-app", config.celery_app)
    return args


class Supervisor:
    """Run with ``await start()`` … ``await stop()``, or ``run()`` to block.

    ``extensions``: factories by name; by default those installed under the
    ``coda.supervisor_extensions`` entry points (``coda.supervisor.extension``).
    """

    def __init__(
        self,
        config: SupervisorConfig,
        *,
        extensions: Mapping[str, ExtensionFactory] | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.id = new_id()[:12]
        registry.import_modules(list(config.modules))
        if config.celery_app:
            registry.adopt_celery_app(config.celery_app, beat=config.celery_beat)
        self.clock = LoopClock()
        self.store = open_store(config.store, self.clock)
        accept = set(SAFE_CONTENT) | ({"pickle"} if config.accept_pickle else set())
        self.engine = Engine(
            self.store,
            self._lookup,
            self.clock,
            accept_content=frozenset(serializers.content_type_for(n) for n in accept),
            value_limit=config.frame_limit,
            on_hung_worker=self._kill_worker,
        )
        self.fleet = self._join_fleet(config)
        self.scheduler = Scheduler(
            registry.all_schedules(), self.clock, self.store, self.engine.submit, self._lookup
        )
        self.extensions = Extensions(
            discover_extensions() if extensions is None else extensions,
            SupervisorHost(self),
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
        self.metrics = Metrics(self.engine, self._lookup, restarts=lambda: self.pool.restarts)
        self.gate = ConnectionGate(config.max_connections)  # sized to the descriptors at start
        self.throttle = TokenThrottle()
        self.quieter = Quieter()
        self.addresses: list[str] = []
        self.started_at = time.time()
        self._servers: list[asyncio.Server] = []
        self.dashboard: DashboardServer | None = None  # with --http, once started
        self.http_routes: list[BaseRoute] = []  # more dashboard routes, set before start
        self._stopped = asyncio.Event()
        self._housekeeping: asyncio.Task[None] | None = None
        self._worker_conns: weakref.WeakSet[SupervisorConnection] = weakref.WeakSet()
        self._stop_request = asyncio.Event()  # a signal, or a lost fleet lease
        self.fatal: str | None = None  # why it stopped on its own

    @staticmethod
    def _lookup(name: str) -> NameInfo:
        return registry.get_spec(name)

    def _join_fleet(self, config: SupervisorConfig) -> FleetMember | None:
        """On a shared store, this supervisor is one of a fleet (fleet.py)."""
        if not isinstance(self.store, SharedStore):
            return None
        member = self.store.fleet(
            self.clock,
            supervisor_id=self.id,
            queues=config.queues,
            lease=config.fleet_lease,
            poll=config.fleet_poll,
        )
        self.engine.join_fleet(Fleet(member, self.engine, config.queues, self._lost_lease))
        self.store.on_fenced = self.engine.jobs.fenced_off
        return member

    def _lost_lease(self, reason: str) -> None:
        self.fatal = f"lost its place in the fleet: {reason}"
        self._stop_request.set()

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
        loop.set_exception_handler(QuietLoopErrors(self.quieter))
        self._size_gate()
        self.clock.bind()  # before any thread (the store's, the fleet's) defers to it
        if self.fleet is not None:
            self.fleet.join()
        recovered = self.engine.recover()
        if recovered:
            log.info("recovered %d unfinished jobs from the store", recovered)
        self.extensions.start()  # before the first client can reach one
        try:
            await self._listen(loop)
            await self._serve_dashboard()
        except BaseException:
            for server in self._servers:
                server.close()
            self.extensions.close()
            self.store.close()
            raise
        self.scheduler.start()  # its ticks queue until workers join
        await self.pool.start()
        if self.fleet is not None and self.engine.fleet is not None:
            self.fleet.start(self.engine.fleet)
        self._housekeeping = asyncio.create_task(self._expire_periodically())

    def _size_gate(self) -> None:
        """As many client connections as the configuration asks for, or as
        the descriptor limit leaves room for."""
        limit = descriptor_limit()
        wanted = self.config.max_connections
        self.gate.max_connections = capacity(wanted, limit, self.config.workers)
        if self.gate.max_connections < wanted:
            log.warning(
                "holding at most %d client connections, not --max-connections %d: the "
                "descriptor limit is %d (raise it with ulimit -n, or LimitNOFILE= under systemd)",
                self.gate.max_connections,
                wanted,
                limit,
            )

    async def _listen(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.config.listen is not None:
            _, (host, port) = parse_address(self.config.listen)
            tls = listener_options(self.config.tls_cert, self.config.tls_key, self.config.tls_ca)
            try:
                server = await loop.create_server(
                    lambda: SupervisorConnection(self), host, port, **tls
                )
            except OSError as exc:
                raise bind_failure("listen on", self.config.listen, "--listen", exc) from None
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

    async def _serve_dashboard(self) -> None:
        """``--http``: the dashboard (coda.dashboard), on this loop; its
        routes, ``/metrics`` (metrics.py) and ``http_routes``, behind the
        protocol's token."""
        config = self.config
        if config.http is None:
            return
        from ..dashboard import DashboardServer, Tls, create_app  # starlette, uvicorn: if asked

        source = ReadModel(self.engine, self.status, self._lookup)
        routes = [self.metrics.route(), *self.http_routes]
        app = create_app(source, token=config.token, throttle=self.throttle, extra_routes=routes)
        tls = (
            None if config.tls_cert is None else Tls(config.tls_cert, config.tls_key, config.tls_ca)
        )
        self.dashboard = DashboardServer(app, config.http, tls)
        await self.dashboard.start()

    async def _expire_periodically(self) -> None:
        interval = min(60.0, max(1.0, self.config.result_ttl / 10))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            expired: asyncio.Future[int] = loop.create_future()
            self.engine.expire(self.config.result_ttl, functools.partial(_resolve, expired))
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
        self.scheduler.stop()  # ticks from now on are missed ticks of the next start
        self.engine.drain(lambda: _resolve(idle, None))
        try:
            await asyncio.wait_for(idle, grace)
        except TimeoutError:
            log.warning(
                "%d tasks still running after the %.0fs grace: they run again after a restart",
                self.engine.in_flight(),
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
        self.scheduler.stop()
        if not self.engine.draining:
            self.engine.drain(lambda: None)
        for server in self._servers:
            server.close()
        if self.dashboard is not None:
            await self.dashboard.stop()
        await self.pool.stop()
        conns = [conn for conn in self._worker_conns if not conn.closed.is_set()]
        for conn in conns:
            conn.close()
        await asyncio.gather(*(conn.closed.wait() for conn in conns))
        self.extensions.close()
        self._leave_fleet()
        self.store.close()
        self._stopped.set()

    def _leave_fleet(self) -> None:
        """Hand the jobs still held here to the fleet at once (not after the
        lease), unless the lease is already lost (they are reclaimed then)."""
        if self.fleet is None:
            return
        if self.fatal is None:
            self.store.after_commit(lambda: None)  # what was saved goes first
            try:
                released = self.fleet.leave()
            except Exception as exc:  # the database is out of reach: the lease will do
                log.warning("could not hand the jobs back to the fleet: %s", exc)
            else:
                log.info("handed %d unfinished jobs back to the fleet", released)
        self.fleet.stop()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def status(self) -> dict[str, Any]:
        status = self.engine.status()
        status["schedules"] = self.scheduler.status()
        status["supervisor"] = {
            "id": self.id,
            "pid": os.getpid(),
            "addresses": self.addresses,
            "dashboard": None if self.dashboard is None else self.dashboard.url,
            "uptime": round(time.time() - self.started_at, 1),
            "worker_processes": self.config.workers,
            "worker_restarts": self.pool.restarts,
            "state": describe_store(self.config.store),
            "connections": self.gate.statistics(),
            "wrong_tokens": self.throttle.statistics(),
        }
        if self.fleet is not None:
            status["fleet"] = self.fleet.statistics()
        status.update(self.extensions.statistics())
        return status

    def run(self, ready_line: bool = True) -> None:
        """Serve until SIGINT or SIGTERM, on uvloop when it is installed
        (measured: about a quarter less CPU per task than stock asyncio).
        A fatal signal (SIGSEGV, SIGBUS from a damaged mapped file) prints
        the Python traceback of every thread before the process dies; freed
        large values go back to the system (``coda._malloc``); the soft
        descriptor limit is raised to the hard one (gate.py)."""
        faulthandler.enable()
        return_large_blocks()
        before, after = raise_descriptor_limit()
        if after > before:
            log.info("descriptor limit raised from %d to %d", before, after)
        run_event_loop(self._main(ready_line))
        if self.fatal is not None:
            raise CodaError(f"the supervisor stopped: it {self.fatal}; start it again")

    async def _main(self, ready_line: bool) -> None:
        await self.start()
        loop = asyncio.get_running_loop()
        stopping = self._stop_request
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        if ready_line:
            where = " and ".join(self.addresses)
            state = describe_store(self.config.store)
            if self.dashboard is not None:
                print(f"coda dashboard on {self.dashboard.url}", flush=True)
            print(f"coda supervisor ready on {where} (state: {state})", flush=True)
        await stopping.wait()
        stopping.clear()
        if self.fatal is not None:  # nothing to drain for: others own its jobs now
            await self.stop()
            return
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
