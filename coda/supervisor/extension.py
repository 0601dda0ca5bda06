"""The supervisor's one plug-in point: extensions that serve their own messages.

An extension (the ``coda://`` broker is one) adds message types to what the
supervisor's client connections accept, and serves them. The core never
imports one: the supervisor finds them through the entry-point group
``coda.supervisor_extensions``, whose entries name a factory (usually the
extension's class) that is called with the ``ExtensionHost`` and returns a
``SupervisorExtension``.

Life of an extension: built when the supervisor is, ``start()`` once the
event loop runs, then, after each client's handshake, ``handle(peer,
message)`` for every message of a type it declared in ``message_types``,
``disconnected(peer)`` when a client connection closes, ``statistics()``
whenever someone asks for the supervisor's status (shown under the entry
point's name), and ``close()`` when the supervisor stops. Each message type
belongs to one extension; a tag that clashes with another extension's or the
core's is refused when the supervisor starts. Workers' connections never
reach an extension.

The host is deliberately small: the clock, the supervisor's configuration,
submitting a job as a client would, asking whether a name is a task,
cancelling and purging as an operator would, and read-only views of the
unfinished jobs and the workers (what the broker's Celery node reports to
``celery inspect``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol

from ..errors import ConfigurationError
from ..messages import Kind, Payload, Submit, WireMessage
from ..protocol import CORE_CODEC, MessageCodec
from .clock import Clock
from .config import SupervisorConfig

__all__ = [
    "ENTRY_POINT_GROUP",
    "ClientPeer",
    "ExtensionFactory",
    "ExtensionHost",
    "Extensions",
    "JobSummary",
    "SupervisorExtension",
    "WorkerSummary",
    "discover_extensions",
]

log = logging.getLogger("coda.supervisor")

ENTRY_POINT_GROUP = "coda.supervisor_extensions"


class ClientPeer(Protocol):
    """A client connection, as an extension sees it."""

    @property
    def is_open(self) -> bool: ...

    def send(self, message: WireMessage) -> None:
        """Queue a message for the client (written at the end of this loop turn)."""
        ...


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One unfinished job, as an extension may see it.

    ``state`` is ``queued``, ``delayed`` (held for a retry, an ETA or a
    rate limit until ``ready_at``) or ``running``; a running task the worker
    holds back (prefetched) and has not started yet has ``started`` False."""

    id: str
    kind: Kind
    name: str
    queue: str
    state: str
    args: Payload
    attempt: int
    parent_run: str | None
    ready_at: float | None
    started_at: float | None
    worker_pid: int | None
    started: bool


@dataclass(frozen=True, slots=True)
class WorkerSummary:
    id: int
    pid: int
    queues: tuple[str, ...]
    task_slots: int
    running_tasks: int


class ExtensionHost(Protocol):
    """What the supervisor offers its extensions."""

    @property
    def clock(self) -> Clock:
        """Wall-clock time and timers; tests pass a fake one."""
        ...

    @property
    def config(self) -> SupervisorConfig: ...

    @property
    def supervisor_id(self) -> str:
        """This supervisor's id (in a fleet, its name among the others)."""
        ...

    def advertised_address(self) -> str | None:
        """The TCP address other hosts dial to reach this supervisor (a
        wildcard listener gives its host name), once it listens; else None."""
        ...

    def submit(self, peer: ClientPeer, message: Submit) -> None:
        """Start a task or workflow exactly as a client's ``Submit`` would;
        the answers (``Accepted`` or ``Error``, ``Finished`` with ``wait``)
        go to ``peer``."""
        ...

    def is_task(self, name: str) -> bool:
        """Whether ``name`` is a task this supervisor knows (registered with
        ``@coda.task`` or adopted from a Celery app)."""
        ...

    def cancel(self, run_id: str, terminate: bool = False) -> str | None:
        """Cancel a run as ``coda cancel`` does (``terminate`` replaces the
        worker of a running sync task): ``"cancelled"``, ``"cancelling"``
        while workers stop it, or None if no such run is unfinished."""
        ...

    def purge(self, queue: str) -> int:
        """Cancel every job waiting in a queue (``coda purge``); how many."""
        ...

    def cancel_waiting(self, run_id: str) -> bool:
        """Cancel the job if it has not started (queued, delayed, or held
        back by a worker, which then drops it); whether it was."""
        ...

    def job(self, run_id: str) -> JobSummary | None:
        """The unfinished job of that id, if any."""
        ...

    def jobs(self, kind: Kind = "task") -> list[JobSummary]:
        """Every unfinished job of a kind, oldest first."""
        ...

    def workers(self) -> list[WorkerSummary]:
        """The connected workers."""
        ...

    def task_names(self) -> list[str]:
        """The tasks this supervisor can run, sorted."""
        ...

    def counts(self) -> Mapping[str, Mapping[str, int]]:
        """Per name, how many ended succeeded, failed, cancelled, retried."""
        ...


class SupervisorExtension(Protocol):
    """What an extension offers the supervisor."""

    @property
    def message_types(self) -> Collection[type[WireMessage]]:
        """The messages it accepts from client connections."""
        ...

    def start(self) -> None:
        """The event loop runs: timers may be armed from here on."""
        ...

    def handle(self, peer: ClientPeer, message: WireMessage) -> None:
        """One message of a declared type, from a client past its handshake."""
        ...

    def disconnected(self, peer: ClientPeer) -> None:
        """A client connection closed: forget what it held."""
        ...

    def statistics(self) -> dict[str, Any]:
        """Counters for ``coda status``, under the extension's name."""
        ...

    def close(self) -> None:
        """The supervisor stops."""
        ...


ExtensionFactory = Callable[[ExtensionHost], SupervisorExtension]


def discover_extensions() -> dict[str, ExtensionFactory]:
    """The factories installed under ``coda.supervisor_extensions``, by name."""
    factories: dict[str, ExtensionFactory] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            factories[entry.name] = entry.load()
        except Exception as exc:
            raise ConfigurationError(
                f"supervisor extension {entry.name!r} ({entry.value}) cannot be loaded: {exc}; "
                "reinstall the package that provides it, or uninstall it"
            ) from exc
    return factories


class Extensions:
    """The extensions of one supervisor, and which one serves which message."""

    def __init__(self, factories: Mapping[str, ExtensionFactory], host: ExtensionHost) -> None:
        self._by_name: dict[str, SupervisorExtension] = {}
        self._by_type: dict[type[WireMessage], SupervisorExtension] = {}
        for name, factory in factories.items():
            extension = factory(host)
            self._by_name[name] = extension
            for message_type in extension.message_types:
                if message_type in self._by_type:
                    raise ConfigurationError(
                        f"supervisor extension {name!r} declares {message_type.__qualname__}, "
                        "which another extension already serves"
                    )
                self._by_type[message_type] = extension
        # refuses a tag that clashes with the core's or another extension's
        self.codec: MessageCodec[WireMessage] = CORE_CODEC.extended(self._by_type)

    def handler_for(self, message: WireMessage) -> SupervisorExtension | None:
        """The extension that declared this message's type, if any."""
        return self._by_type.get(type(message))

    def start(self) -> None:
        for extension in self._by_name.values():
            extension.start()

    def disconnected(self, peer: ClientPeer) -> None:
        for extension in self._by_name.values():
            extension.disconnected(peer)

    def statistics(self) -> dict[str, dict[str, Any]]:
        return {name: extension.statistics() for name, extension in self._by_name.items()}

    def close(self) -> None:
        for name, extension in self._by_name.items():
            try:
                extension.close()
            except Exception:
                log.exception("supervisor extension %r failed to close", name)
