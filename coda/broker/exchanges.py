"""Exchanges and bindings: which queues a published message goes to.

AMQP's routing model, held by the supervisor for every client at once (kombu's
virtual transports keep it per connection, which is why Celery's remote
control needs a broker-side table; here there is only the broker-side one):

- ``direct``: queues bound with exactly the message's routing key;
- ``topic``: routing keys are dot-separated words; in a binding key ``*``
  matches one word and ``#`` zero or more;
- ``fanout``: every bound queue, whatever the key;
- the default exchange ``""``: the queue named by the routing key.

Pure data, no I/O; ``Broker`` owns one ``ExchangeTable``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ..errors import BrokerError

__all__ = ["EXCHANGE_TYPES", "PREDECLARED", "Exchange", "ExchangeTable", "topic_pattern"]

ExchangeType = Literal["direct", "topic", "fanout"]
EXCHANGE_TYPES: dict[str, ExchangeType] = {"direct": "direct", "topic": "topic", "fanout": "fanout"}
PREDECLARED: dict[str, ExchangeType] = {
    "amq.direct": "direct",
    "amq.topic": "topic",
    "amq.fanout": "fanout",
}


def topic_pattern(binding_key: str) -> re.Pattern[str]:
    """A regex matching ``"." + routing_key`` for a topic binding key."""
    parts = []
    for word in binding_key.split("."):
        if word == "#":
            parts.append(r"(?:\.[^.]*)*")
        elif word == "*":
            parts.append(r"\.[^.]+")
        else:
            parts.append(r"\." + re.escape(word))
    return re.compile("".join(parts))


@dataclass(eq=False)
class Exchange:
    name: str
    type: ExchangeType
    durable: bool = False
    auto_delete: bool = False
    # (binding key, queue) in binding order; a dict is an ordered set
    bindings: dict[tuple[str, str], None] = field(default_factory=dict)
    _patterns: dict[str, re.Pattern[str]] = field(default_factory=dict)

    def bind(self, queue: str, key: str) -> None:
        self.bindings[(key, queue)] = None
        if self.type == "topic" and key not in self._patterns:
            self._patterns[key] = topic_pattern(key)

    def unbind(self, queue: str, key: str) -> None:
        self.bindings.pop((key, queue), None)

    def unbind_queue(self, queue: str) -> None:
        for binding in [b for b in self.bindings if b[1] == queue]:
            del self.bindings[binding]

    def route(self, routing_key: str) -> list[str]:
        """Bound queues for this key, each once, in binding order."""
        if self.type == "fanout":
            found = [queue for _, queue in self.bindings]
        elif self.type == "direct":
            found = [queue for key, queue in self.bindings if key == routing_key]
        else:
            subject = "." + routing_key
            found = [
                queue
                for key, queue in self.bindings
                if self._patterns[key].fullmatch(subject) is not None
            ]
        return list(dict.fromkeys(found))


class ExchangeTable:
    """Every exchange of the broker, by name."""

    def __init__(self) -> None:
        self.exchanges: dict[str, Exchange] = {
            name: Exchange(name, kind, durable=True) for name, kind in PREDECLARED.items()
        }

    def declare(
        self,
        name: str,
        kind: ExchangeType,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        passive: bool = False,
    ) -> Exchange:
        if not name:
            raise BrokerError("access_refused", "the default exchange cannot be declared")
        existing = self.exchanges.get(name)
        if existing is None:
            if passive:
                raise BrokerError("not_found", f"no exchange {name!r}")
            existing = self.exchanges[name] = Exchange(name, kind, durable, auto_delete)
        elif existing.type != kind and not passive:
            raise BrokerError(
                "not_equivalent",
                f"exchange {name!r} exists with type {existing.type!r}, not {kind!r}",
            )
        return existing

    def delete(self, name: str, *, if_unused: bool = False) -> None:
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise BrokerError("in_use", f"exchange {name!r} has bindings")
        del self.exchanges[name]

    def get(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise BrokerError("not_found", f"no exchange {name!r}")
        return exchange

    def unbind_queue(self, queue: str) -> None:
        for exchange in self.exchanges.values():
            exchange.unbind_queue(queue)

    def route(self, exchange: str, routing_key: str) -> list[str]:
        """Queue names for a message; the default exchange names the queue."""
        if not exchange:
            return [routing_key]
        found = self.exchanges.get(exchange)
        return found.route(routing_key) if found is not None else []

    def bindings_of(self, queue: str) -> int:
        return sum(1 for e in self.exchanges.values() for _, q in e.bindings if q == queue)
