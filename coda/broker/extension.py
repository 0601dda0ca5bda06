"""The broker as an extension of the supervisor (``coda.supervisor_extensions``).

The supervisor finds ``BrokerExtension`` through its entry point and hands it
every ``BROKER_REQUESTS`` message a client connection sends; this module only
wires the parts to what the supervisor offers (``ExtensionHost``): its clock
for ETAs, expiries and group commits, ``--store`` (the broker keeps its
durable state in the same file as the engine's: ``storage``),
``--result-ttl`` for results stored without a time to live, with
``--celery-divert`` the submission of Celery messages as Coda jobs
(``divert``), and for the Celery node (``control``: ``celery inspect``,
revoke, purge) its views of the jobs and workers, cancel and submit.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from ..errors import ConfigurationError
from ..messages import WireMessage
from ..supervisor.extension import ClientPeer, ExtensionHost
from .control import ControlNode
from .divert import Diverter, DivertRules
from .messages import BROKER_REQUESTS
from .service import BrokerService
from .storage import BrokerStore, MemoryBrokerStore, open_broker_store

if TYPE_CHECKING:
    from .fleet import BrokerFleet  # psycopg: the postgres extra, imported for a fleet only

__all__ = ["BrokerExtension"]


class BrokerExtension:
    """The ``coda://`` broker and Celery result store of one supervisor."""

    def __init__(self, host: ExtensionHost) -> None:
        config = host.config
        rules = DivertRules.parse(config.celery_divert)
        diverter: Diverter | None = None
        if rules:
            if not config.celery_app:
                raise ConfigurationError("--celery-divert needs --celery-app")
            diverter = Diverter(rules, host.submit, host.is_task)
        self._diverter = diverter
        self._host = host
        self.fleet: BrokerFleet | None = None
        if config.store.startswith(("postgresql:", "postgres:")):  # a fleet: fleet.py
            from .._tls import peer_context
            from .fleet import BrokerFleet

            tls = None
            if config.tls_cert is not None:
                tls = peer_context(config.tls_cert, config.tls_key, config.tls_ca)
            self.fleet = BrokerFleet(
                config.store,
                host.clock,
                supervisor_id=host.supervisor_id,
                token=config.token,
                address=host.advertised_address,
                become_leader=self._serve_from,
                tls=tls,
            )
            self.service = self._service(MemoryBrokerStore())  # until it leads, it relays
        else:
            self.service = self._service(open_broker_store(config.store, host.clock))

    def _service(self, store: BrokerStore) -> BrokerService:
        service = BrokerService(
            result_ttl=self._host.config.result_ttl,
            clock=self._host.clock,
            divert=self._diverter,
            store=store,
        )
        service.node = ControlNode(self._host, service.broker)
        return service

    def _serve_from(self, store: BrokerStore) -> None:
        """This supervisor leads the fleet's broker from now on."""
        self.service.close()
        self.service = self._service(store)
        self.service.restore()

    @property
    def message_types(self) -> Collection[type[WireMessage]]:
        return BROKER_REQUESTS

    def start(self) -> None:
        """Reload the durable queues, messages and results of the previous
        supervisor on this store (timers are armed on the host's clock); on
        a fleet, lead the broker if nobody does, else relay to the leader."""
        if self.fleet is not None:
            self.fleet.start()
        else:
            self.service.restore()

    def handle(self, peer: ClientPeer, message: WireMessage) -> None:
        if self.fleet is not None and not self.fleet.leading:
            self.fleet.relay(peer, message)
        else:
            self.service.handle(peer, message)

    def disconnected(self, peer: ClientPeer) -> None:
        if self.fleet is not None:
            self.fleet.disconnected(peer)
        self.service.disconnected(peer)

    def statistics(self) -> dict[str, Any]:
        stats = self.service.statistics()
        if self.fleet is not None:
            stats["fleet"] = self.fleet.statistics()
        return stats

    def close(self) -> None:
        """Write what is pending to the store and close it."""
        if self.fleet is not None:
            self.fleet.close()
        self.service.close()
