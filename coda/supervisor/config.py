"""What ``coda supervisor`` is told: its command line as one frozen value.

Extensions read the values they need from it too (``ExtensionHost.config``).
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field

from .._client_common import DEFAULT_ADDRESS
from .._tls import check_server_options
from .._wire import parse_address
from ..decorators import DEFAULT_QUEUE
from ..errors import ConfigurationError
from ..protocol import DEFAULT_FRAME_LIMIT, ENVELOPE_ALLOWANCE, HANDSHAKE_FRAME_LIMIT
from .state_dir import default_store_url

__all__ = ["MAX_FRAME_LIMIT", "MIN_FRAME_LIMIT", "SupervisorConfig", "queue_names_ok"]

MIN_FRAME_LIMIT = HANDSHAKE_FRAME_LIMIT
MAX_FRAME_LIMIT = 2**32 - 1 - ENVELOPE_ALLOWANCE  # the length prefix has 4 bytes


@dataclass(frozen=True)
class SupervisorConfig:
    """Everything ``coda supervisor`` accepts on its command line.

    The defaults here are the command line's too (``cli.py`` reads them from
    these fields), so a supervisor built in Python behaves as one started by
    ``coda supervisor`` with the same options: durable state in the state
    directory (``state_dir.py``), not in memory.
    """

    modules: tuple[str, ...] = ()
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    listen: str | None = DEFAULT_ADDRESS
    unix_socket: str | None = None
    http: str | None = None  # the dashboard's HOST:PORT (coda.dashboard); None: no dashboard
    queues: tuple[str, ...] = (DEFAULT_QUEUE,)
    concurrency: int = 1
    prefetch: int | None = None  # tasks sent beyond a worker's slots; None: 4 x concurrency
    workflow_slots: int = 100
    token: str | None = None
    tls_cert: str | None = None  # TLS on the TCP listener: certificate (PEM)
    tls_key: str | None = None  # its private key, unless in the certificate file
    tls_ca: str | None = None  # require client certificates signed by this CA
    accept_pickle: bool = False
    frame_limit: int = DEFAULT_FRAME_LIMIT  # the largest argument or result, in bytes encoded
    max_connections: int = 10_000  # client connections at once (fewer if descriptors are short)
    handshake_timeout: float = 10.0  # seconds a new connection has to say hello
    result_ttl: float = 24 * 3600.0
    store: str = field(default_factory=default_store_url)
    shutdown_grace: float = 30.0  # seconds SIGTERM waits for running tasks
    # on a shared (PostgreSQL) store: seconds without a heartbeat after which the
    # fleet reclaims this supervisor's jobs
    fleet_lease: float = 30.0
    celery_app: str | None = None  # "module:attribute" of a Celery app whose tasks to adopt
    # coda:// messages of adopted tasks that Coda workers take: "*", "queue:NAME", task names
    celery_divert: tuple[str, ...] = ()
    # run the Celery app's beat_schedule from this supervisor (instead of celery beat)
    celery_beat: bool = False

    def check(self) -> None:
        if self.workers < 0:
            raise ConfigurationError(f"--workers must be >= 0, got {self.workers}")
        if self.concurrency < 1 or self.workflow_slots < 1:
            raise ConfigurationError("--concurrency and --workflow-slots must be >= 1")
        if self.celery_app and self.concurrency > 1:
            raise ConfigurationError(
                f"--concurrency {self.concurrency} with --celery-app: a Coda worker runs one "
                "Celery task at a time, on its main thread (as a prefork child does, for "
                f"soft time limits); to run {self.concurrency} at once, use "
                f"--workers {self.concurrency} (Celery's -c {self.concurrency})"
            )
        if not self.fleet_lease >= 1:
            raise ConfigurationError(f"--fleet-lease must be >= 1 second, got {self.fleet_lease}")
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
        self._check_http()
        self._check_limits()
        if self.celery_beat and not self.celery_app:
            raise ConfigurationError(
                "--celery-beat runs a Celery app's beat_schedule: add --celery-app"
            )
        if not queue_names_ok(self.queues):
            raise ConfigurationError(f"invalid --queues {self.queues!r}")
        check_server_options(self.tls_cert, self.tls_key, self.tls_ca, tcp=self.listen is not None)

    def _check_http(self) -> None:
        if self.http is None:
            return
        kind, where = parse_address(self.http)
        if kind != "tcp":
            raise ConfigurationError(f"--http takes HOST:PORT, got {self.http!r}")
        if not _is_loopback(where[0]) and not self.token:
            raise ConfigurationError(
                f"refusing to serve the dashboard on {where[0]!r} without a token: set --token "
                "or CODA_TOKEN, or serve it on a loopback address (--http 127.0.0.1:PORT)"
            )

    def _check_limits(self) -> None:
        if not MIN_FRAME_LIMIT <= self.frame_limit <= MAX_FRAME_LIMIT:
            raise ConfigurationError(
                f"--frame-limit must be between {MIN_FRAME_LIMIT} and {MAX_FRAME_LIMIT} bytes, "
                f"got {self.frame_limit}"
            )
        if self.max_connections < 1:
            raise ConfigurationError(f"--max-connections must be >= 1, got {self.max_connections}")
        if not self.handshake_timeout > 0:
            raise ConfigurationError(
                f"--handshake-timeout must be > 0 seconds, got {self.handshake_timeout}"
            )

    @property
    def task_prefetch(self) -> int:
        return 4 * self.concurrency if self.prefetch is None else self.prefetch


def queue_names_ok(queues: tuple[str, ...]) -> bool:
    return bool(queues) and all(q and not any(c.isspace() for c in q) for q in queues)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
