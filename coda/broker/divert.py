"""Celery messages published to ``coda://`` that Coda workers run instead.

When the supervisor adopts a Celery app (``--celery-app``), a message for one
of its tasks can skip the broker queues and become a Coda job, so Coda
workers execute it with Celery's semantics (through the Celery bridge) while
stock Celery workers keep consuming everything else from the same traffic.
Producers change nothing. Which messages: ``--celery-divert`` rules, each
``*`` (every adopted task), ``queue:NAME`` (messages routed to that broker
queue) or a task name.

The job is exactly what a Coda-routed ``.delay()`` submits: named after the
task, its id is Celery's task id (a republished message is idempotent), its
arguments ``{ENVELOPE: <the protocol-v2 message>}`` (the shape the Celery
bridge's workers read), held until the message's ``eta``. This is
the one place the supervisor opens a message: the kombu envelope (headers,
properties); the task's own body stays opaque bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import msgspec

from ..errors import CodaError, ConfigurationError
from ..messages import Accepted, Error, Payload, Submit, WireMessage
from ..serialization import registry as serializers
from .messages import BrokerOk, Publish

if TYPE_CHECKING:  # a Celery producer imports ENVELOPE; it needs no supervisor
    from ..supervisor.extension import ClientPeer

__all__ = ["ENVELOPE", "NOBODY", "DivertRules", "Diverter"]

log = logging.getLogger("coda.broker")

ENVELOPE = "__celery__"
"""The one key of a Celery message's job arguments, defined here once: the
Celery bridge builds and reads the same ``{ENVELOPE: {...}}`` shape."""

_decoder = msgspec.msgpack.Decoder()


class _Nobody:
    """The submitter of a diverted message: nobody waits for ``Accepted``."""

    is_open = False

    def send(self, message: WireMessage) -> None:
        pass


NOBODY = _Nobody()
"""The peer of a job the broker submits on its own (no client waits for it)."""


class _Confirm:
    """The submitter of a diverted message whose producer asked for a
    confirm: the job's ``Accepted`` (sent once it is committed) becomes the
    publish's ``BrokerOk``, a refusal its ``Error``."""

    def __init__(self, producer: ClientPeer, req_id: int) -> None:
        self.producer = producer
        self.req_id = req_id

    @property
    def is_open(self) -> bool:
        return self.producer.is_open

    def send(self, message: WireMessage) -> None:
        if isinstance(message, Error):
            refusal = Error(code=message.code, message=message.message, req_id=self.req_id)
            self.producer.send(refusal)
        elif isinstance(message, Accepted):
            self.producer.send(BrokerOk(req_id=self.req_id))


@dataclass(frozen=True)
class DivertRules:
    everything: bool = False
    tasks: frozenset[str] = frozenset()
    queues: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, values: Iterable[str]) -> DivertRules:
        """From ``--celery-divert`` values (comma-separated, repeatable)."""
        everything, tasks, queues = False, set(), set()
        for value in values:
            for rule in (r.strip() for r in value.split(",")):
                if rule == "*":
                    everything = True
                elif rule.startswith("queue:") and rule[6:]:
                    queues.add(rule[6:])
                elif rule and ":" not in rule and not any(c.isspace() for c in rule):
                    tasks.add(rule)
                elif rule:
                    raise ConfigurationError(
                        f"--celery-divert rule {rule!r}: use '*', 'queue:NAME' or a task name"
                    )
        return cls(everything, frozenset(tasks), frozenset(queues))

    def __bool__(self) -> bool:
        return self.everything or bool(self.tasks) or bool(self.queues)

    def matches(self, task: str, queues: Iterable[str]) -> bool:
        return self.everything or task in self.tasks or not self.queues.isdisjoint(queues)


class Diverter:
    """``diverter(publish, queues)`` → True when the message became a Coda job."""

    def __init__(
        self,
        rules: DivertRules,
        submit: Callable[[ClientPeer, Submit], None],
        adopted: Callable[[str], bool],
    ) -> None:
        self.rules = rules
        self._submit = submit
        self._adopted = adopted
        self.count = 0

    def __call__(
        self, msg: Publish, queues: list[str], confirm_to: ClientPeer | None = None
    ) -> bool:
        task = msg.task
        if task is None or msg.task_id is None:
            return False
        if not self.rules.matches(task, [*queues, msg.routing_key]) or not self._adopted(task):
            return False
        try:
            args = self._job_args(msg)
        except (CodaError, msgspec.MsgspecError, KeyError, TypeError, ValueError) as exc:
            log.warning("not diverting task %s (%s): %s", task, msg.task_id, exc)
            return False
        job = Submit(req_id=0, name=task, args=args, run_id=msg.task_id, not_before=msg.eta)
        submitter: ClientPeer = NOBODY
        if confirm_to is not None and msg.req_id is not None:
            submitter = _Confirm(confirm_to, msg.req_id)
        self._submit(submitter, job)
        self.count += 1
        return True

    @staticmethod
    def _job_args(msg: Publish) -> Payload:
        kombu: dict[str, Any] = _decoder.decode(msg.body)
        encoding = str(kombu.get("content-encoding") or "utf-8")
        body = kombu["body"]
        envelope = {
            "headers": kombu.get("headers") or {},
            "properties": kombu.get("properties") or {},
            "body": body.encode(encoding) if isinstance(body, str) else bytes(body),
            "content_type": str(kombu["content-type"]),
            "content_encoding": encoding,
        }
        content_type, content_encoding, data = serializers.dumps({ENVELOPE: envelope}, "msgpack")
        return Payload(content_type, content_encoding, memoryview(data))
