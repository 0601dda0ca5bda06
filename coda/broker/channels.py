"""Who holds what in the broker: connections, channels, consumers, leases.

A connection (one peer) has channels; a channel has consumers (one queue
each, acking or not), a prefetch limit, and the ledger of its leases: every
delivery it has not acked or rejected yet, in delivery order, by delivery
tag. The ledger is what makes redelivery exact when a channel closes or its
connection drops. Plain records; ``Broker`` acts on them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..supervisor.extension import ClientPeer
from .queues import BrokerQueue, Envelope

__all__ = ["ChannelState", "ConnectionState", "ConnectionTable", "Consumer", "Lease"]


@dataclass(eq=False)
class Consumer:
    channel: ChannelState
    tag: str
    queue: BrokerQueue
    no_ack: bool


@dataclass(eq=False, slots=True)
class Lease:
    envelope: Envelope
    queue: str


@dataclass(eq=False)
class ConnectionState:
    peer: ClientPeer
    channels: dict[int, ChannelState] = field(default_factory=dict)


@dataclass(eq=False)
class ChannelState:
    connection: ConnectionState
    id: int
    prefetch: int = 0
    consumers: dict[str, Consumer] = field(default_factory=dict)
    unacked: dict[int, Lease] = field(default_factory=dict)  # in delivery order
    next_tag: int = 1
    closed: bool = False

    def has_credit(self) -> bool:
        """May another acking delivery go to this channel?"""
        if self.closed:
            return False
        return self.prefetch <= 0 or len(self.unacked) < self.prefetch

    def lease(self, queue: BrokerQueue, envelope: Envelope, *, no_ack: bool) -> int:
        """A new delivery tag; recorded in the ledger unless ``no_ack``."""
        tag = self.next_tag
        self.next_tag += 1
        if not no_ack:
            self.unacked[tag] = Lease(envelope, queue.name)
        return tag


class ConnectionTable:
    """Connection state by peer (peers need not be hashable: keyed by identity)."""

    def __init__(self) -> None:
        self._by_peer: dict[int, ConnectionState] = {}

    def __len__(self) -> int:
        return len(self._by_peer)

    def __iter__(self) -> Iterator[ConnectionState]:
        return iter(list(self._by_peer.values()))

    def get(self, peer: ClientPeer) -> ConnectionState | None:
        return self._by_peer.get(id(peer))

    def ensure(self, peer: ClientPeer) -> ConnectionState:
        connection = self._by_peer.get(id(peer))
        if connection is None:
            connection = self._by_peer[id(peer)] = ConnectionState(peer)
        return connection

    def pop(self, peer: ClientPeer) -> ConnectionState | None:
        return self._by_peer.pop(id(peer), None)

    def channel(self, peer: ClientPeer, channel_id: int) -> ChannelState:
        connection = self.ensure(peer)
        channel = connection.channels.get(channel_id)
        if channel is None:
            channel = connection.channels[channel_id] = ChannelState(connection, channel_id)
        return channel

    def existing_channel(self, peer: ClientPeer, channel_id: int) -> ChannelState | None:
        connection = self._by_peer.get(id(peer))
        return connection.channels.get(channel_id) if connection else None
