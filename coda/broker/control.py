"""The supervisor as a Celery node: remote control reaches the tasks Coda runs.

Celery's remote control (``celery inspect``, ``celery status``,
``control.revoke``, Flower's workers page) broadcasts a command on the
``<namespace>.pidbox`` fanout exchange, and every worker answers on the
reply exchange the command names. This module is a node of that protocol
inside the broker, named ``coda@<hostname>``: it sees every broadcast the
broker routes (``wants``/``on_publish``, beside the stock workers' own
mailbox queues) and answers through the broker, for the whole supervisor.
The same node answers ``ControlRequest`` frames (``request``): that is how
``install()``, whose app may talk to another broker, reaches it.

Commands (see ``inspect_replies`` for the answers' shapes):

- ``ping``, ``active``, ``reserved``, ``scheduled``, ``revoked``,
  ``registered``, ``stats``, ``active_queues``;
- ``revoke``: a Coda job of that task id that has not started (queued,
  held for its ETA or a retry, prefetched) is cancelled and never runs;
  with ``terminate`` a running one is stopped too (its worker process is
  replaced). Either way the task is then reported revoked by a Coda worker
  running the internal task ``REVOKED_TASK`` (REVOKED in the app's result
  backend, ``task_revoked``, a ``task-revoked`` event), as a Celery worker
  reports a revoked task. A running task revoked without ``terminate`` runs
  to its end, as in Celery. The id is remembered (``revoked``), so a message
  diverted later for it is cancelled at once (``after_divert``);
- ``purge`` (``ControlRequest`` only: Celery purges queues, not nodes):
  ``purge_queue`` cancels the Coda jobs of Celery tasks that wait for a
  queue, the queue's broker purge calls it too;
- anything else is refused in its reply (``{"error": ...}``), never
  answered as if it had been done.

Bodies are read at this boundary: the kombu message (msgpack, from the
transport), its body (json or msgpack, as Celery's ``task_serializer``)
into a typed ``ControlCommand``. No Celery import.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
import logging
import re
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from ..errors import CodaError
from ..messages import Payload, Submit
from ..serialization import registry as serializers
from ..supervisor.extension import ExtensionHost, JobSummary
from . import inspect_replies as replies
from .broker import Broker
from .celery_tasks import envelope_of, from_job_args
from .divert import NOBODY
from .messages import Publish

__all__ = ["REVOKED_TASK", "ControlCommand", "ControlNode", "ReplyTo"]

log = logging.getLogger("coda.broker")

REVOKED_TASK = "celery.coda.revoked"  # registered by the Celery bridge
"""The internal task (registered by the Celery bridge) that reports a task
revoked in the app's result backend, with its signal and event."""

MAX_REVOKED = 50_000  # ids remembered, as Celery's worker_state.revoked

_kombu = msgspec.msgpack.Encoder()
_kombu_decoder = msgspec.msgpack.Decoder()
_JSON = "application/json"
_MSGPACK = "application/x-msgpack"


class ReplyTo(msgspec.Struct, frozen=True):
    exchange: str
    routing_key: str


class ControlCommand(msgspec.Struct, frozen=True):
    """One remote-control command, as kombu's ``Mailbox._publish`` sends it."""

    method: str
    arguments: dict[str, Any] = {}
    destination: list[str] | None = None
    pattern: str | None = None
    matcher: str | None = None
    ticket: str | None = None
    reply_to: ReplyTo | None = None


Handler = Callable[[ControlCommand], Any]


class ControlNode:
    def __init__(self, host: ExtensionHost, broker: Broker) -> None:
        self.host = host
        self.broker = broker
        self.name = f"coda@{socket.gethostname()}"
        self.revoked: dict[str, None] = {}  # an ordered set, oldest first
        self.counts: Counter[str] = Counter()
        self._started_at = host.clock.time()
        self._lamport = itertools.count(1)  # kombu's message clock
        self._handlers: dict[str, Handler] = {
            "ping": lambda _: {"ok": "pong"},
            "active": lambda _: replies.active(host),
            "reserved": lambda _: replies.reserved(host),
            "scheduled": lambda _: replies.scheduled(host, broker.held_messages()),
            "revoked": lambda _: list(self.revoked),
            "registered": lambda _: replies.registered(host),
            "stats": lambda _: replies.stats(host, self._started_at, next(self._lamport)),
            "active_queues": lambda _: replies.active_queues(host),
            "revoke": self._revoke,
            "purge": self._purge,
        }

    # -- the pidbox -------------------------------------------------------------

    @staticmethod
    def wants(msg: Publish) -> bool:
        """A broadcast to Celery's workers (not a reply to a caller)."""
        exchange = msg.exchange
        return exchange.endswith(".pidbox") and not exchange.startswith("reply.")

    def on_publish(self, msg: Publish) -> None:
        parsed = _command(msg.body)
        if parsed is None:
            self.counts["unreadable"] += 1
            return
        command, content_type, expires = parsed
        if expires and self.host.clock.time() > expires:
            return
        answer = self.request(command)
        if answer is not None and command.reply_to is not None:
            self._reply(command, answer, content_type)

    def request(self, command: ControlCommand) -> Any:
        """Carry out a command addressed to this node; its answer (None when
        it is addressed to other nodes)."""
        if not self._addressed(command):
            return None
        handler = self._handlers.get(command.method)
        if handler is None:
            self.counts["refused"] += 1
            return {
                "error": f"{command.method!r} is not supported by a Coda node ({self.name}): "
                "it answers ping, inspect (active, reserved, scheduled, revoked, "
                "registered, stats, active_queues), revoke and purge"
            }
        self.counts[command.method] += 1
        try:
            return handler(command)
        except (CodaError, KeyError, TypeError, ValueError) as exc:
            log.warning("remote control %r failed: %r", command.method, exc)
            return {"error": repr(exc)}

    def _addressed(self, command: ControlCommand) -> bool:
        if command.destination:
            return self.name in command.destination
        if command.pattern and command.matcher:
            return self._matches(command.pattern, command.matcher)
        return True

    def _matches(self, pattern: str, matcher: str) -> bool:
        """kombu's matchers: ``glob`` is fnmatch, ``pcre`` is ``re.match``. A
        pattern that does not compile, or a matcher kombu does not know,
        addresses no node (kombu would raise in the sender's own process)."""
        if matcher == "glob":
            return fnmatch.fnmatch(self.name, pattern)
        if matcher == "pcre":
            try:
                return re.match(pattern, self.name) is not None
            except re.error:
                pass
        log.warning("remote control pattern %r (matcher %r) addresses no node", pattern, matcher)
        self.counts["unreadable"] += 1
        return False

    def _reply(self, command: ControlCommand, answer: Any, content_type: str) -> None:
        assert command.reply_to is not None
        data = {self.name: answer}
        if content_type == _MSGPACK:
            body, encoding = msgspec.msgpack.encode(data), "binary"
        else:
            body, encoding, content_type = json.dumps(data, default=str).encode(), "utf-8", _JSON
        exchange, key = command.reply_to.exchange, command.reply_to.routing_key
        message = {
            "body": body,
            "content-type": content_type,
            "content-encoding": encoding,
            "headers": {"ticket": command.ticket, "clock": next(self._lamport)},
            "properties": {
                "delivery_mode": 1,
                "priority": 0,
                "body_encoding": None,
                "delivery_info": {"exchange": exchange, "routing_key": key},
            },
        }
        body = _kombu.encode(message)
        self.broker.publish(Publish(exchange=exchange, routing_key=key, body=body))

    # -- revoke -----------------------------------------------------------------

    def _revoke(self, command: ControlCommand) -> Any:
        arguments = command.arguments
        ids = arguments.get("task_id")
        ids = [ids] if isinstance(ids, str) else [str(i) for i in ids or ()]
        terminate = bool(arguments.get("terminate"))
        stopped = [task_id for task_id in ids if self._revoke_one(task_id, terminate)]
        if terminate:
            return {"ok": f"terminate: {', '.join(stopped)}" if stopped else "tasks unknown"}
        return {"ok": f"tasks {set(ids)} flagged as revoked"}

    def _revoke_one(self, task_id: str, terminate: bool) -> bool:
        """Remember the id; cancel its Coda job if it may still be stopped."""
        self.revoked.pop(task_id, None)
        self.revoked[task_id] = None
        while len(self.revoked) > MAX_REVOKED:
            del self.revoked[next(iter(self.revoked))]
        job = self.host.job(task_id)
        if job is None or job.kind != "task" or (job.started and not terminate):
            return False
        if job.started:
            self.host.cancel(task_id, terminate=True)
        elif not self.host.cancel_waiting(task_id):
            return False
        self._report_revoked(job, terminated=job.started)
        return True

    def after_divert(self, task_id: str) -> None:
        """A message just became a Coda job: cancel it if it was revoked before."""
        if task_id in self.revoked:
            self._revoke_one(task_id, terminate=False)

    def _report_revoked(self, job: JobSummary, *, terminated: bool) -> None:
        envelope = envelope_of(job.args)
        if envelope is None or not self.host.is_task(REVOKED_TASK):
            return
        args = {"envelope": envelope, "terminated": terminated}
        content_type, encoding, data = serializers.dumps(args, "msgpack")
        self.host.submit(
            NOBODY,
            Submit(
                req_id=0,
                name=REVOKED_TASK,
                args=Payload(content_type, encoding, memoryview(data)),
                run_id=f"{job.id}.revoked",
                queue=job.queue,
            ),
        )

    # -- purge ------------------------------------------------------------------

    def _purge(self, command: ControlCommand) -> Any:
        queues = command.arguments.get("queues") or ()
        return {"purged": sum(self.purge_queue(str(queue)) for queue in queues)}

    def purge_queue(self, queue: str) -> int:
        """Cancel the Coda jobs of Celery tasks (not canvas steps) that have
        not started and whose message was routed to ``queue``; how many."""
        purged = 0
        for job in self.host.jobs("task"):
            if job.parent_run is not None or job.started:
                continue
            message = from_job_args(job.args)
            if message is None:
                continue
            destinations = {message.routing_key}
            if message.exchange:
                destinations.update(
                    self.broker.topology.exchanges.route(message.exchange, message.routing_key)
                )
            if queue in destinations and self.host.cancel_waiting(job.id):
                purged += 1
        self.counts["purged_jobs"] += purged
        return purged

    def statistics(self) -> dict[str, Any]:
        return {"name": self.name, "revoked": len(self.revoked), "counts": dict(self.counts)}


def _command(body: bytes) -> tuple[ControlCommand, str, float] | None:
    """(command, its content type, its expiry) from a published kombu message."""
    try:
        message = _kombu_decoder.decode(body)
        content_type = str(message.get("content-type") or "")
        payload = message.get("body")
        if isinstance(payload, str):
            payload = payload.encode(str(message.get("content-encoding") or "utf-8"))
        if content_type == _JSON:
            decoded = json.loads(payload)
        elif content_type == _MSGPACK:
            decoded = msgspec.msgpack.decode(payload)
        else:
            return None
        command = msgspec.convert(decoded, ControlCommand)
        headers = message.get("headers") or {}
        expires = float(headers.get("expires") or 0)
    except (msgspec.MsgspecError, AttributeError, TypeError, ValueError):
        return None
    return command, content_type, expires
