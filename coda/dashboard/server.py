"""uvicorn serving the dashboard inside the supervisor's own event loop.

The socket is bound here, before uvicorn sees it, so a busy port is one
clear line naming the address and the flag, and ``--http HOST:0`` learns
its port. uvicorn's signal handlers are left out: the supervisor owns
SIGINT and SIGTERM and stops the server itself. With the supervisor's TLS
options it serves HTTPS with the same certificate (and, with a CA, asks
clients for theirs, as the protocol's listener does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from .._wire import bind_failure, parse_address
from ..errors import ConfigurationError

__all__ = ["DashboardServer", "Tls"]

log = logging.getLogger("coda.dashboard")


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the supervisor's handlers stay in place


@dataclass(frozen=True)
class Tls:
    cert: str
    key: str | None = None  # None: in the certificate file
    ca: str | None = None  # require client certificates signed by it


class DashboardServer:
    """``await start()`` … ``await stop()``; ``url`` once started."""

    def __init__(self, app: ASGIApp, address: str, tls: Tls | None = None) -> None:
        self.app = app
        self.address = address
        self.tls = tls
        self.url = ""
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # no "Started server process"
        sock = _bind(self.address)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if self.tls else 'http'}://{shown}:{port}/"
        tls = self.tls
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            ssl_certfile=None if tls is None else tls.cert,
            ssl_keyfile=None if tls is None else tls.key,
            ssl_ca_certs=None if tls is None else tls.ca,
            ssl_cert_reqs=ssl.CERT_REQUIRED if tls and tls.ca else ssl.CERT_NONE,
        )
        self._server = server = _Server(config)
        self._task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # startup is a few turns of the loop
            if self._task.done():
                self._task.result()  # its error, if it failed
                raise ConfigurationError(f"the dashboard on {self.address} did not start")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        self._server.force_exit = True  # open polls are not waited for
        with contextlib.suppress(Exception):
            await self._task


def _bind(address: str) -> socket.socket:
    _, (host, port) = parse_address(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family)
    except OSError as exc:
        raise bind_failure("serve the dashboard on", address, "--http", exc) from None
    sock.setblocking(False)
    return sock
