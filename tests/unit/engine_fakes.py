"""Fake peers, names and workers for driving the engine without I/O.

The engine runs on a ``ManualClock``: ``clock.settle()`` runs what it
deferred (the pump, group commits), ``clock.advance(s)`` fires its timers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from coda.errors import UnknownNameError
from coda.messages import Kind, Message, Payload, RunTask, Spawn
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine, WorkerHandle
from coda.supervisor.stores.base import Store
from coda.supervisor.stores.memory import MemoryStore

ARGS = Payload("application/x-msgpack", "binary", b"\x80")
RESULT = Payload("application/x-msgpack", "binary", b"\x2a")


@dataclass
class FakePeer:
    sent: list[Message] = field(default_factory=list)
    is_open: bool = True

    def send(self, message: Message) -> None:
        self.sent.append(message)

    def take(self) -> list[Message]:
        taken, self.sent = self.sent, []
        return taken


@dataclass(frozen=True)
class Info:
    kind: Kind
    queue: str = "default"
    timeout: float | None = None
    is_async: bool = False
    min_interval: float | None = None


NAMES = {
    "t": Info("task"),
    "at": Info("task", is_async=True),
    "w": Info("workflow"),
    "other_q": Info("task", queue="other"),
    "slow": Info("task", timeout=5.0),
    "limited": Info("task", min_interval=10.0),
}


def lookup(name: str) -> Info:
    if name not in NAMES:
        raise UnknownNameError(name)
    return NAMES[name]


def make_engine(clock: ManualClock, store: Store | None = None, **options: object) -> Engine:
    return Engine(
        store if store is not None else MemoryStore(),
        lookup,
        clock,
        accept_content=frozenset({ARGS.content_type}),
        **options,  # type: ignore[arg-type]
    )


def worker(
    engine: Engine,
    worker_id: int,
    tasks: int = 1,
    workflows: int = 10,
    queues: tuple[str, ...] = ("default",),
    prefetch: int = 0,
) -> WorkerHandle:
    handle = WorkerHandle(
        worker_id, FakePeer(), 100 + worker_id, queues, tasks, workflows, prefetch
    )
    engine.worker_joined(handle)
    return handle


def sent(handle: WorkerHandle) -> list[Message]:
    """What the worker was sent since last asked."""
    peer = handle.peer
    assert isinstance(peer, FakePeer)
    return peer.take()


def runs(handle: WorkerHandle) -> list[RunTask]:
    return [m for m in sent(handle) if isinstance(m, RunTask)]


def again(spawn: Spawn, req_id: int) -> Spawn:
    """The same spawn under another request id (a rerun, or a second await)."""
    fields = {name: getattr(spawn, name) for name in spawn.__struct_fields__}
    return Spawn(**{**fields, "req_id": req_id})
