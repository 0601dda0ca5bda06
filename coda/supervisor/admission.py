"""What the engine accepts as new work, and the one-line refusals of the rest.

A submit or a spawn names a registered task or workflow, carries arguments
in a content type this supervisor accepts and within its frame limit (a
client or worker of this version refuses larger ones itself, before sending
them), and arrives while the store can save it. Each refusal goes to the
sender alone, with the request's id, and says what was wrong; nothing else
is affected.
"""

from __future__ import annotations

from collections.abc import Callable

from .._outcome import value_too_large
from ..errors import CodaError, UnknownNameError
from ..messages import Error, Payload
from ..protocol import DEFAULT_FRAME_LIMIT
from .peers import NameInfo, Peer
from .stores.base import Store

__all__ = ["Admission"]


class Admission:
    def __init__(
        self,
        lookup: Callable[[str], NameInfo],
        accept: frozenset[str],
        store: Store,
        value_limit: int = DEFAULT_FRAME_LIMIT,
    ) -> None:
        self._lookup = lookup
        self._accept = accept
        self._store = store
        self._value_limit = value_limit

    def check(
        self, peer: Peer, req_id: int, name: str, args: Payload, kind: str | None
    ) -> NameInfo | None:
        """Look the name up and vet the payload; answer the refusal if any."""
        try:
            info = self._lookup(name)
            if kind is not None and info.kind != kind:
                raise UnknownNameError(name, kind)
        except CodaError as exc:
            peer.send(Error(code="unknown_name", message=str(exc), req_id=req_id))
            return None
        if args.content_type not in self._accept:
            accepted = ", ".join(sorted(self._accept))
            message = (
                f"content type {args.content_type!r} is not accepted by this supervisor "
                f"(accepted: {accepted})"
            )
            peer.send(Error(code="content_disallowed", message=message, req_id=req_id))
            return None
        size, limit = len(args.body), self._value_limit
        if size > limit:
            refusal = value_too_large(f"the arguments of {name!r}", size, limit)
            peer.send(Error(code="too_large", message=str(refusal), req_id=req_id))
            return None
        return info

    def store_refuses(self, peer: Peer, req_id: int) -> bool:
        """Refuse new work while the store cannot commit, saying why."""
        reason = self._store.unavailable()
        if reason is not None:
            message = (
                f"the supervisor cannot save new work: its store fails to commit ({reason}); "
                "it keeps retrying, so submit again later"
            )
            peer.send(Error(code="store_unavailable", message=message, req_id=req_id))
        return reason is not None
