"""The ends of submitted runs a blocking client is owed, kept for their handles.

A ``Client.submit`` asks the supervisor to send the run's end, once durable,
on the connection that submitted it (see ``coda.client``). Whatever the
client reads while it waits for another answer, the ends owed to live
handles are kept here until ``result()`` takes them. A handle that is
collected unread gives its end up: the request is forgotten, and the end, if
it comes, is passed over. Everything is tied to one connection: after a
reconnect, handles ask again with ``Await``.
"""

from __future__ import annotations

import weakref
from collections import deque

from ._connection import Answer, ClientConnection, Event, Refused
from .errors import CodaError
from .messages import Finished

__all__ = ["Owed", "OwedEnds"]


class Owed:
    """Where a handle's end will arrive: which connection, which request."""

    __slots__ = ("conn", "req_id")

    def __init__(self, conn: ClientConnection, req_id: int) -> None:
        self.conn = conn
        self.req_id = req_id


class OwedEnds:
    """The requests whose ends are owed on the current connection, and those
    ends already read. Used under the client's lock."""

    def __init__(self) -> None:
        self._kept: dict[int, Finished | CodaError] = {}
        self._owed: set[int] = set()
        # handles collected since (appended by their finalizers, from any thread)
        self._dropped: deque[tuple[ClientConnection, int]] = deque()

    def expect(self, handle: object, conn: ClientConnection, req_id: int) -> Owed:
        """``handle`` is owed the end answering ``req_id`` on ``conn``."""
        self._owed.add(req_id)
        weakref.finalize(handle, self._dropped.append, (conn, req_id))
        return Owed(conn, req_id)

    def owes(self, owed: Owed | None, conn: ClientConnection | None) -> bool:
        """Will that end come (or has it come) on ``conn``, the connection now?"""
        return owed is not None and owed.conn is conn and owed.req_id in self._owed

    def keep(self, event: Event) -> bool:
        """Keep the event if it is an end owed to a handle; False if not."""
        match event:
            case Answer(req_id=req_id, message=Finished() as message) if req_id in self._owed:
                self._kept[req_id] = message
            case Refused(req_id=req_id, error=error) if req_id in self._owed:
                self._kept[req_id] = error
            case _:
                return False
        return True

    def take(self, req_id: int) -> Finished | CodaError | None:
        """The end read already, if any; it is then no longer owed."""
        kept = self._kept.pop(req_id, None)
        if kept is not None:
            self._owed.discard(req_id)
        return kept

    def settled(self, req_id: int) -> None:
        """The end came and went to its handle."""
        self._owed.discard(req_id)

    def forget_dropped(self, conn: ClientConnection | None) -> None:
        """Give up the ends of collected handles (nobody will ask for them)."""
        while self._dropped:
            dropped_conn, req_id = self._dropped.popleft()
            if dropped_conn is conn and req_id in self._owed:
                self._owed.discard(req_id)
                self._kept.pop(req_id, None)
                dropped_conn.forget(req_id)

    def clear(self) -> None:
        """The connection is gone: nothing more is owed on it."""
        self._kept.clear()
        self._owed.clear()
