"""``coda://`` for kombu and Celery: the supervisor as broker and result backend.

Importing this package registers the ``coda`` scheme with kombu (kombu has no
entry point for transports), so ``Connection("coda://127.0.0.1:42069")`` and
Celery's ``broker_url = "coda://127.0.0.1:42069"`` work in this process and
in processes forked from it. Without the import, set Celery's
``broker_transport = "coda.compat.kombu.transport:Transport"``. The result
backend (``result_backend = "coda://..."``) is found through the
``celery.result_backends`` entry point and needs no import.
"""

from __future__ import annotations

from kombu.transport import TRANSPORT_ALIASES

from .transport import Channel, Transport

__all__ = ["TRANSPORT", "Channel", "Transport", "register"]

TRANSPORT = "coda.compat.kombu.transport:Transport"


def register() -> None:
    """Make ``coda://`` URLs resolve to this transport (idempotent)."""
    TRANSPORT_ALIASES.setdefault("coda", TRANSPORT)


register()
