"""The message properties a publish keeps: AMQP's basic properties.

kombu turns every keyword of ``Producer.publish`` it does not know into a
message property, and Celery does the same with the keywords of
``apply_async``. A signal handler that forwards its ``**kwargs`` into
``apply_async`` therefore publishes ``signal=<Signal>``. An AMQP client
encodes only the basic properties and drops the rest; kombu's Redis
transport tries to serialize them and the publish fails. Coda keeps what
AMQP keeps, plus what kombu's virtual transports read back
(``delivery_info``, ``delivery_tag``, ``body_encoding``), and drops the rest
with a warning that names each dropped property once per process: the
message is sent, and nothing is lost without a word.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["KEPT_PROPERTIES", "kept_properties"]

log = logging.getLogger("coda.compat.kombu")

KEPT_PROPERTIES = frozenset(
    {
        # AMQP 0-9-1 basic properties (content type and encoding travel beside them)
        "content_type",
        "content_encoding",
        "application_headers",
        "delivery_mode",
        "priority",
        "correlation_id",
        "reply_to",
        "expiration",
        "message_id",
        "timestamp",
        "type",
        "user_id",
        "app_id",
        "cluster_id",
        # what kombu's virtual transports keep in the same dict
        "delivery_info",
        "delivery_tag",
        "body_encoding",
    }
)

_named: set[str] = set()  # dropped properties already logged by this process


def kept_properties(properties: Mapping[str, Any]) -> dict[str, Any]:
    """``properties`` without the ones AMQP would not send; each dropped name
    is logged once."""
    unknown = properties.keys() - KEPT_PROPERTIES
    for name in sorted(unknown - _named):
        _named.add(name)
        log.warning(
            "dropped the message property %r (%s): it is not an AMQP message property, "
            "and AMQP clients drop those too; pass it in the task's arguments or "
            "headers= if the task needs it (logged once per property name)",
            name,
            type(properties[name]).__name__,
        )
    if not unknown:
        return dict(properties)
    return {name: value for name, value in properties.items() if name in KEPT_PROPERTIES}
