"""The ``coda://`` broker on a fleet: one leader serves it, the others relay.

With a PostgreSQL store, supervisors share one broker, served by one of
them at a time: the *leader*, the supervisor holding the broker's advisory
lock in the database. Its broker keeps its durable state in the database's
``coda_broker_*`` tables (``storage.postgres``), written through the very
connection that holds the lock, so a leader that lost its connection cannot
write again after another took over. It publishes its address in
``coda_broker_leader``.

Every other supervisor *relays*: each client connection that speaks the
broker's messages to it (a Celery worker, a producer, a result reader) gets
a connection of its own to the leader, and every broker message goes up it
unchanged, every answer and delivery comes back down it. A message
published through one supervisor is so consumed by a Celery worker
connected to another, and its result is readable through any. When the
leader dies, its lock is released with its connection; a follower that
polls the lock (every ``TAKEOVER_POLL`` seconds) takes over, loads what the
dead leader left (unacked messages come back redelivered, as after a
restart), and the relayed clients, whose connections drop with their
upstream, reconnect and carry on (kombu and Celery reconnect by themselves).

Relaying speaks to the address the leader advertises (a supervisor
listening on ``0.0.0.0`` advertises its host name), with the token of
``--token``, and over TLS when the supervisor serves TLS (``--tls-cert``):
the leader does too, so a plain connection would be refused. See
``coda._tls.peer_context`` for what a relay trusts.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, cast

import psycopg

from .._wire import FramedProtocol, parse_address
from ..errors import CodaError
from ..messages import PROTOCOL_VERSION, Error, Hello, Welcome, WireMessage
from ..supervisor.clock import Clock
from ..supervisor.extension import ClientPeer
from ..supervisor.stores.postgres.schema import PostgresUrl
from .messages import CLIENT_CODEC
from .storage.postgres import PostgresBrokerStore

__all__ = ["LEADER_WAIT", "TAKEOVER_POLL", "BrokerFleet"]

log = logging.getLogger("coda.broker")

TAKEOVER_POLL = 2.0  # seconds between a follower's tries to take the broker's lock
# how long a relayed client waits for a leader to be known (one starting, or
# taking over) before its connection is closed
LEADER_WAIT = 2 * TAKEOVER_POLL + 1.0
LEADER = """
CREATE TABLE IF NOT EXISTS coda_broker_leader (
    singleton integer PRIMARY KEY CHECK (singleton = 1),
    supervisor_id text NOT NULL,
    address text NOT NULL
)
"""


class BrokerFleet:
    """Who serves the broker; relays for the others' clients.

    ``become_leader(store)`` is called on the engine's thread with the store
    to serve from (at start, or when this supervisor takes over)."""

    def __init__(
        self,
        url: str,
        clock: Clock,
        *,
        supervisor_id: str,
        token: str | None,
        address: Callable[[], str | None],
        become_leader: Callable[[PostgresBrokerStore], None],
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.url = PostgresUrl(url)
        self._clock = clock
        self._id = supervisor_id
        self._token = token or ""
        self._address = address
        self._tls = tls  # the relay's client context when the fleet serves TLS
        self._become_leader = become_leader
        self._lock_key = f"{self.url.schema}.coda_broker"
        self.leading = False
        self._relays: dict[int, _Upstream] = {}  # id(downstream peer) -> its upstream
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self.takeovers = 0

    # -- leadership ------------------------------------------------------------

    def start(self) -> None:
        """Try to lead now (a blocking call, at start); then watch."""
        conn = self._try_lock()
        if conn is not None:
            self._lead(conn)
        self._watcher = threading.Thread(target=self._watch, name="coda-broker-lead", daemon=True)
        self._watcher.start()

    def _try_lock(self) -> psycopg.Connection[tuple[Any, ...]] | None:
        """A connection holding the broker's lock, or None."""
        conn = psycopg.connect(self.url.dsn, autocommit=True)
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.url.schema}")
            conn.execute(LEADER)
            row = conn.execute("SELECT pg_try_advisory_lock(hashtext(%s))", (self._lock_key,))
            if bool(cast(tuple[Any, ...], row.fetchone())[0]):
                conn.autocommit = False
                return conn
        except BaseException:
            conn.close()
            raise
        conn.close()
        return None

    def _lead(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.leading = True
        log.warning("this supervisor serves the fleet's coda:// broker")
        self._become_leader(PostgresBrokerStore(conn, self.url.schema, clock=self._clock))

    def _watch(self) -> None:
        """Followers try the lock; the leader keeps its address published
        (at once when it starts listening, then every poll)."""
        wait = 0.0
        while not self._stopping.wait(wait):
            wait = TAKEOVER_POLL
            try:
                if self.leading:
                    if not self._advertise():
                        wait = 0.1  # not listening yet: advertise as soon as it is
                    continue
                conn = self._try_lock()
            except (psycopg.Error, OSError) as exc:
                log.warning("broker fleet: the database did not answer: %s", exc)
                continue
            if conn is not None:
                self._clock.defer_threadsafe(functools.partial(self._take_over, conn))
                return

    def _take_over(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        self.takeovers += 1
        for upstream in list(self._relays.values()):
            upstream.close()  # their clients reconnect, and are served here
        self._relays.clear()
        self._lead(conn)
        self._watcher = threading.Thread(target=self._watch, name="coda-broker-lead", daemon=True)
        self._watcher.start()

    def _advertise(self) -> bool:
        """Publish this leader's address; False if it is not listening yet."""
        address = self._address()
        if address is None:
            return False
        with psycopg.connect(self.url.dsn, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO coda_broker_leader VALUES (1, %s, %s) ON CONFLICT (singleton) "
                "DO UPDATE SET supervisor_id = excluded.supervisor_id, address = excluded.address "
                "WHERE (coda_broker_leader.supervisor_id, coda_broker_leader.address) "
                "IS DISTINCT FROM (excluded.supervisor_id, excluded.address)",
                (self._id, address),
            )
        return True

    def leader_address(self) -> str | None:
        with psycopg.connect(self.url.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT address FROM coda_broker_leader").fetchone()
        return None if row is None else str(row[0])

    # -- relaying ------------------------------------------------------------------

    def relay(self, peer: ClientPeer, message: WireMessage) -> None:
        """Send a follower's client message up to the leader."""
        upstream = self._relays.get(id(peer))
        if upstream is None:
            upstream = self._relays[id(peer)] = _Upstream(self, peer)
        upstream.forward(message)

    def disconnected(self, peer: ClientPeer) -> None:
        upstream = self._relays.pop(id(peer), None)
        if upstream is not None:
            upstream.close()

    def forget(self, peer: ClientPeer) -> None:
        self._relays.pop(id(peer), None)

    def statistics(self) -> dict[str, Any]:
        return {
            "role": "leader" if self.leading else "relay",
            "relayed_connections": len(self._relays),
            "takeovers": self.takeovers,
        }

    def close(self) -> None:
        self._stopping.set()
        for upstream in list(self._relays.values()):
            upstream.close()
        self._relays.clear()


class _Upstream:
    """One relayed client: its connection to the leader."""

    def __init__(self, fleet: BrokerFleet, peer: ClientPeer) -> None:
        self._fleet = fleet
        self._peer = peer
        self._pending: list[WireMessage] = []  # sent up once connected
        self._protocol: _UpstreamProtocol | None = None
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        try:
            address = await self._leader()
            _, (host, port) = parse_address(address)
            loop = asyncio.get_running_loop()
            tls = self._fleet._tls
            _, protocol = await loop.create_connection(
                lambda: _UpstreamProtocol(self),
                host,
                port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
        except (OSError, CodaError, psycopg.Error) as exc:  # ssl.SSLError is an OSError
            log.warning("broker fleet: cannot reach the leader (%s); closing the client", exc)
            self._drop_downstream()
            return
        self._protocol = protocol
        protocol.send(Hello(version=PROTOCOL_VERSION, role="client", token=self._fleet._token))
        for message in self._pending:
            protocol.send(message)
        self._pending.clear()

    async def _leader(self) -> str:
        """The leader's address, once one is known (within ``LEADER_WAIT``)."""
        deadline = asyncio.get_running_loop().time() + LEADER_WAIT
        while True:
            address = await asyncio.to_thread(self._fleet.leader_address)
            if address is not None:
                return address
            if asyncio.get_running_loop().time() >= deadline:
                raise CodaError(f"no supervisor has served the fleet's broker for {LEADER_WAIT:g}s")
            await asyncio.sleep(0.1)

    def forward(self, message: WireMessage) -> None:
        if self._protocol is None:
            self._pending.append(message)
        elif self._protocol.is_open:
            self._protocol.send(message)

    def answer(self, message: WireMessage) -> None:
        if isinstance(message, Welcome):
            return
        if isinstance(message, Error) and message.req_id is None:
            log.warning("broker fleet: the leader refused a relay: %s", message.message)
            self._drop_downstream()
            return
        if self._peer.is_open:
            self._peer.send(message)

    def upstream_lost(self) -> None:
        if not self._closed:
            self._drop_downstream()

    def _drop_downstream(self) -> None:
        """The client reconnects (kombu and Celery do) and is served again.
        (A client connection can be closed; ``ClientPeer`` does not promise it.)"""
        self._closed = True
        self._fleet.forget(self._peer)
        close = getattr(self._peer, "close", None)
        if callable(close):
            close()

    def close(self) -> None:
        self._closed = True
        self._task.cancel()
        if self._protocol is not None:
            self._protocol.close()


class _UpstreamProtocol(FramedProtocol):
    def __init__(self, upstream: _Upstream) -> None:
        super().__init__(codec=CLIENT_CODEC)
        self._upstream = upstream

    def message_received(self, message: WireMessage) -> None:
        self._upstream.answer(message)

    def on_closed(self, exc: Exception | None) -> None:
        self._upstream.upstream_lost()
