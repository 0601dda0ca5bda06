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
from typing import Any

from ..errors import ConfigurationError
from ..messages import WireMessage
from ..supervisor.extension import ClientPeer, ExtensionHost
from .control import ControlNode
from .divert import Diverter, DivertRules
from .messages import BROKER_REQUESTS
from .service import BrokerService
from .storage import open_broker_store

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
        self.service = BrokerService(
            result_ttl=config.result_ttl,
            clock=host.clock,
            divert=diverter,
            store=open_broker_store(config.store, host.clock),
        )
        self.service.node = ControlNode(host, self.service.broker)

    @property
    def message_types(self) -> Collection[type[WireMessage]]:
        return BROKER_REQUESTS

    def start(self) -> None:
        """Reload the durable queues, messages and results of the previous
        supervisor on this store (timers are armed on the host's clock)."""
        self.service.restore()

    def handle(self, peer: ClientPeer, message: WireMessage) -> None:
        self.service.handle(peer, message)

    def disconnected(self, peer: ClientPeer) -> None:
        self.service.disconnected(peer)

    def statistics(self) -> dict[str, Any]:
        return self.service.statistics()

    def close(self) -> None:
        """Write what is pending to the store and close it."""
        self.service.close()
