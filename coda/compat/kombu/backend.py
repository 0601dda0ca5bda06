"""``result_backend = "coda://host:port"``: Celery results kept by the supervisor.

Resolved through the ``celery.result_backends`` entry point (see
pyproject.toml), so the URL is all a Celery app needs. What differs from a
key-value backend such as Redis:

- ``AsyncResult.get()`` and ``GroupResult.get()`` block on a push from the
  supervisor (``ResultWait``) instead of polling every ``interval``.
- Chords are joined in the supervisor: ``apply_chord`` registers the header's
  task ids, each header task reports its outcome, and the one report that
  completes the set is answered with every value in header order; that
  worker sends the body. No counters, no ``celery.chord_unlock`` task.
- "Never overwrite a SUCCESS" is enforced by the supervisor, in one step,
  instead of a read before every write.
- A task whose message expired in the broker reads as REVOKED
  (``TaskRevokedError('expired')``), as if a Celery worker had discarded it.

Metas are stored as opaque bytes in the app's ``result_serializer``, with a
time to live of ``result_expires`` (the supervisor's ``--result-ttl`` when
unset). A chord header that holds a group (a chain ending in a group) is
saved as a group result, as Redis does, and its values reach the body nested
as Celery nests them; groups nested directly in a header are unrolled by
Celery itself.

Reconnecting: when the supervisor goes away (a restart, a crash), every
request, and every wait in progress, connects again and is sent again, for
up to ``result_backend_transport_options["reconnect_timeout"]`` seconds
(default ``RECONNECT_TIMEOUT``), then raises ``ConnectionLostError``. A wait
also stops at its own timeout. Every request is idempotent, so sending one
again is safe.
"""

from __future__ import annotations

import functools
import itertools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from celery import states
from celery.backends.base import BaseBackend
from celery.exceptions import ChordError, TaskRevokedError
from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import GroupResult, result_from_tuple
from celery.utils.functional import maybe_list
from kombu.utils.encoding import bytes_to_str, ensure_bytes

from ...broker.messages import (
    BrokerOk,
    ChordPart,
    ChordReply,
    ChordStart,
    ResultEntry,
    ResultFetch,
    ResultForget,
    ResultKind,
    ResultSave,
    ResultValues,
    ResultWait,
)
from ...errors import ConnectionLostError, RequestRefusedError, ResultTimeoutError
from ...messages import Error, WireMessage
from .canvas_shapes import chained_waits, leaf_ids, nested
from .link import Link, tls_context
from .transport import DEFAULT_PORT

__all__ = ["RECONNECT_TIMEOUT", "CodaBackend", "address_from_url"]

T = TypeVar("T")

RECONNECT_TIMEOUT = 60.0  # seconds a request keeps trying to reach a supervisor that went away
RECONNECT_PAUSES = (0.05, 0.1, 0.2, 0.5, 1.0)  # between attempts; the last one repeats


def address_from_url(url: str | None) -> tuple[str, str]:
    """``coda://[:token@]host:port`` or ``coda:///path/to.sock`` → (address, token)."""
    parts = urlsplit(url or "coda://")
    token = unquote(parts.password or "")
    if parts.hostname:
        return f"{parts.hostname}:{parts.port or DEFAULT_PORT}", token
    if parts.path and parts.path != "/":
        return parts.path, token
    return f"127.0.0.1:{DEFAULT_PORT}", token


class CodaBackend(BaseBackend):  # type: ignore[misc]  # Celery ships no types: Any
    supports_native_join = True
    supports_autoexpire = True

    def __init__(self, app: Any, url: str | None = None, **kwargs: Any) -> None:
        super().__init__(app, url=url, **kwargs)
        self._address, self._token = address_from_url(url)
        self._link: Link | None = None
        self._lock = threading.RLock()

    def __reduce__(self, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None) -> Any:
        return super().__reduce__(args, {**(kwargs or {}), "url": self.url})

    # -- the connection ---------------------------------------------------------

    def _conn(self) -> Link:
        if self._link is None:
            conf = self.app.conf
            timeout = conf.get("broker_connection_timeout") or 10.0
            options = conf.get("result_backend_transport_options") or {}
            self._link = Link(
                self._address,
                token=self._token,
                connect_timeout=timeout,
                tls=tls_context(options.get("ssl")),
            )
        return self._link

    def _request(
        self, build: Callable[[int], WireMessage], timeout: float | None = None
    ) -> WireMessage:
        """One request; on a lost connection, connect again and send it again
        (every request here is idempotent) until ``_reconnect_timeout``."""
        with self._lock:
            link = self._conn()
            reply = self._reconnecting(lambda: link.call(build(link.next_id()), timeout))
        if isinstance(reply, Error):
            raise RequestRefusedError(reply.code, reply.message)
        return reply

    def _reconnecting(self, attempt: Callable[[], T], deadline: float | None = None) -> T:
        """``attempt()``, again after each ``ConnectionLostError`` (the link
        reconnects on its next use) until the reconnect window, or
        ``deadline`` (monotonic), is over."""
        options = self.app.conf.get("result_backend_transport_options") or {}
        give_up = time.monotonic() + float(options.get("reconnect_timeout", RECONNECT_TIMEOUT))
        if deadline is not None:
            give_up = min(give_up, deadline)
        for tries in itertools.count():
            try:
                return attempt()
            except ConnectionLostError:
                pause = RECONNECT_PAUSES[min(tries, len(RECONNECT_PAUSES) - 1)]
                if time.monotonic() + pause > give_up:
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")

    def exception_safe_to_retry(self, exc: Exception) -> bool:
        return isinstance(exc, ConnectionLostError)

    def _ttl(self) -> float | None:
        return float(self.expires) if self.expires else None

    # -- task states ------------------------------------------------------------

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: str | None = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        meta = self._get_result_meta(
            result=result, state=state, traceback=traceback, request=request
        )
        meta["task_id"] = bytes_to_str(task_id)
        value = ensure_bytes(self.encode(meta))
        self._request(lambda r: ResultSave(r, bytes_to_str(task_id), value, state, ttl=self._ttl()))
        return result

    def _fetch(self, ids: list[str], kind: ResultKind = "task") -> list[ResultEntry]:
        reply = self._request(lambda r: ResultFetch(r, ids, kind))
        assert isinstance(reply, ResultValues)
        return reply.entries

    def _get_task_meta_for(self, task_id: str) -> dict[str, Any]:
        return self._meta(self._fetch([bytes_to_str(task_id)])[0])

    def _meta(self, entry: ResultEntry) -> dict[str, Any]:
        if entry.value is not None:
            meta: dict[str, Any] = self.decode_result(entry.value)
            return meta
        if entry.state == states.REVOKED:  # the broker dropped it past its expiry
            exc = TaskRevokedError(entry.note or "revoked")
            return {
                "status": states.REVOKED,
                "result": exc,
                "traceback": None,
                "children": [],
                "date_done": None,
                "task_id": entry.id,
            }
        return {"status": states.PENDING, "result": None}

    def mark_as_failure(
        self,
        task_id: str,
        exc: BaseException,
        traceback: str | None = None,
        request: Any = None,
        store_result: bool = True,
        call_errbacks: bool = True,
        state: str = states.FAILURE,
    ) -> None:
        """Celery's, then what callers of the groups and chords chained after the
        failed task wait on fails too. Celery fails a chained group by its own id
        only, so its ``GroupResult.get()`` waited forever (on Redis too: Celery
        issue #6437); now it raises the failed step's exception."""
        super().mark_as_failure(
            task_id, exc, traceback, request, store_result, call_errbacks, state
        )
        if request is None or not store_result or state not in states.PROPAGATE_STATES:
            return
        for waited_on in chained_waits(getattr(request, "chain", None)):
            self.store_result(waited_on, exc, state, traceback=traceback)

    def _forget(self, task_id: str) -> None:
        self._request(lambda r: ResultForget(r, bytes_to_str(task_id)))

    # -- waiting: pushed, not polled ----------------------------------------------

    def wait_for(
        self,
        task_id: str,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_interval: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        self._ensure_not_eager()
        cached = self._cache.get(task_id)
        if cached is not None and cached["status"] in states.READY_STATES:
            return dict(cached)
        for _, meta in self._wait_many([bytes_to_str(task_id)], timeout, interval, on_interval):
            return meta
        raise CeleryTimeoutError("The operation timed out.")

    def get_many(
        self,
        task_ids: Any,
        timeout: float | None = None,
        interval: float = 0.5,
        no_ack: bool = True,
        on_message: Callable[[dict[str, Any]], None] | None = None,
        on_interval: Callable[[], None] | None = None,
        max_iterations: int | None = None,
        READY_STATES: frozenset[str] = states.READY_STATES,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        pending: list[str] = []
        for task_id in dict.fromkeys(bytes_to_str(t) for t in maybe_list(task_ids) or []):
            cached = self._cache.get(task_id)
            if cached is not None and cached["status"] in READY_STATES:
                yield task_id, cached
            else:
                pending.append(task_id)
        for task_id, meta in self._wait_many(pending, timeout, interval, on_interval):
            if meta["status"] == states.SUCCESS:
                self._cache[task_id] = meta
            if on_message is not None:
                on_message(meta)
            yield task_id, meta

    def _wait_many(
        self,
        ids: list[str],
        timeout: float | None,
        interval: float,
        on_interval: Callable[[], None] | None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (id, meta) as each task becomes ready; raise Celery's
        TimeoutError past ``timeout``. ``on_interval`` (the parents' errors)
        runs after every wait, as in Celery's drain loop, answer or not: a
        chord whose header failed raises the header's exception, as on Redis."""
        if not ids:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        link = self._conn()
        with self._lock:
            waiting = self._reconnecting(functools.partial(self._send_waits, link, ids), deadline)
        try:
            while waiting:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise CeleryTimeoutError(f"Operation timed out ({timeout})")
                slice_ = remaining
                if on_interval is not None:
                    slice_ = interval if remaining is None else min(interval, remaining)
                try:
                    with self._lock:
                        reply = link.wait_reply(set(waiting), slice_)
                except ResultTimeoutError:
                    if on_interval is not None:
                        on_interval()
                    continue
                except ConnectionLostError:  # the supervisor went away: wait on the next one
                    again = functools.partial(self._send_waits, link, list(waiting.values()))
                    with self._lock:
                        waiting = self._reconnecting(again, deadline)
                    continue
                if isinstance(reply, Error):
                    raise RequestRefusedError(reply.code, reply.message)
                assert isinstance(reply, ResultValues), reply
                task_id = waiting.pop(reply.req_id)
                meta = self._meta(reply.entries[0])
                if on_interval is not None:
                    on_interval()  # a failed parent wins over the answer, as in Celery
                yield task_id, meta
        finally:
            link.abandon(set(waiting))

    def _send_waits(self, link: Link, ids: list[str]) -> dict[int, str]:
        waiting: dict[int, str] = {}
        try:
            for task_id in ids:
                req_id = link.next_id()
                link.expect(req_id)
                waiting[req_id] = task_id
                link.send(ResultWait(req_id, task_id))
        except ConnectionLostError:
            link.abandon(set(waiting))
            raise
        return waiting

    # -- groups -----------------------------------------------------------------

    def _save_group(self, group_id: str, result: Any) -> Any:
        value = ensure_bytes(self.encode({"result": result.as_tuple()}))
        self._request(
            lambda r: ResultSave(r, group_id, value, states.SUCCESS, "group", self._ttl())
        )
        return result

    def _restore_group(self, group_id: str) -> dict[str, Any] | None:
        entry = self._fetch([bytes_to_str(group_id)], kind="group")[0]
        if entry.value is None:
            return None
        meta: dict[str, Any] = self.decode(entry.value)
        meta["result"] = result_from_tuple(meta["result"], self.app)
        return meta

    def _delete_group(self, group_id: str) -> None:
        self._request(lambda r: ResultForget(r, bytes_to_str(group_id), "group"))

    # -- chords, joined in the supervisor -------------------------------------------

    def apply_chord(self, header_result_args: Any, body: Any, **kwargs: Any) -> None:
        """Register the header's tasks with the supervisor, flat. A header that
        holds groups (a chain ending in a group) is also saved as a group, as
        Redis does, so the body gets its values nested the same way."""
        self.ensure_chords_allowed()
        group_id, results = header_result_args[0], list(header_result_args[1])
        if any(isinstance(result, GroupResult) for result in results):
            self._save_group(group_id, GroupResult(group_id, results, app=self.app))
        members = list(leaf_ids(results))
        reply = self._request(lambda r: ChordStart(r, group_id, members, self._ttl()))
        assert isinstance(reply, BrokerOk)

    def set_chord_size(self, group_id: str, chord_size: int) -> None:
        """The supervisor counts members by id: nothing to do."""

    def on_chord_part_return(self, request: Any, state: str, result: Any, **kwargs: Any) -> None:
        group_id, task_id = request.group, request.id
        if not group_id or not task_id:
            return
        value = ensure_bytes(self.encode([task_id, state, self.encode_result(result, state)]))
        reply = self._request(lambda r: ChordPart(r, group_id, task_id, value))
        assert isinstance(reply, ChordReply)
        if not reply.complete and not reply.unknown:
            return
        callback = self.app.signature(request.chord)
        if reply.unknown:
            error = ChordError(f"chord {group_id} is not known to the supervisor (expired?)")
            self.chord_error_from_stack(callback, error)
            return
        try:
            values = [self._unpack_part(part) for part in reply.values]
        except ChordError as exc:
            self.chord_error_from_stack(callback, exc)
            return
        saved = self._restore_group(group_id)
        if saved is not None:  # a header that holds groups: nest the values as it does
            values = nested(saved["result"].results, iter(values))
        try:
            callback.delay(values)
        except Exception as exc:
            error = ChordError(f"Callback error: {exc!r}")
            error.__cause__ = exc
            self.chord_error_from_stack(callback, error)

    def _unpack_part(self, part: bytes) -> Any:
        task_id, state, value = self.decode(part)
        if state in states.EXCEPTION_STATES:
            value = self.exception_to_python(value)
        if state in states.PROPAGATE_STATES:
            error = ChordError(f"Dependency {task_id} raised {value!r}")
            if isinstance(value, Exception):
                error.__cause__ = value
            raise error
        return value
