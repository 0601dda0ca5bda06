"""The supervisor's one plug-in point: a client's message of a type an extension
declared goes to that extension, and nowhere else; without the extension the
message is refused by name. Driven through a real ``SupervisorConnection`` on
a fake transport, with the real broker extension and a small probe."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from importlib.metadata import EntryPoint
from typing import Any

import pytest

from coda.broker.messages import BROKER_REPLIES, BrokerOk, QueueDeclare
from coda.errors import ConfigurationError
from coda.messages import (
    MESSAGE_TAGS,
    PROTOCOL_VERSION,
    Accepted,
    Error,
    Hello,
    Payload,
    StatusReply,
    StatusRequest,
    Submit,
    Welcome,
    WireMessage,
)
from coda.protocol import CORE_CODEC, FrameDecoder, encode_message
from coda.supervisor import Supervisor, SupervisorConfig, extension
from coda.supervisor.extension import ClientPeer, ExtensionFactory, ExtensionHost
from coda.supervisor.server import SupervisorConnection
from tests.unit.fake_transport import FakeTransport

CONFIG = SupervisorConfig(
    modules=("tests.apps.basic",), workers=0, listen="127.0.0.1:0", store="memory://"
)
CLIENT_HELLO = Hello(version=PROTOCOL_VERSION, role="client")
ARGS = Payload("application/x-msgpack", "binary", b"\x82\xa1x\x01\xa1y\x02")


class Probe(WireMessage, tag="probe", frozen=True):
    req_id: int
    submit: str | None = None  # a task name to submit through the host


class ProbeReply(WireMessage, tag="probe_reply", frozen=True):
    req_id: int
    seen: int


class Clash(WireMessage, tag="submit", frozen=True):
    name: str


class ProbeExtension:
    """Answers each ``Probe``, counts them, and records its life."""

    def __init__(self, host: ExtensionHost, types: Collection[type[WireMessage]] = (Probe,)):
        self.host = host
        self.types = types
        self.seen = 0
        self.events: list[str] = []

    @property
    def message_types(self) -> Collection[type[WireMessage]]:
        return self.types

    def start(self) -> None:
        self.events.append("start")

    def handle(self, peer: ClientPeer, message: WireMessage) -> None:
        assert isinstance(message, Probe)
        self.seen += 1
        if message.submit is not None:
            self.host.submit(peer, Submit(req_id=message.req_id, name=message.submit, args=ARGS))
        else:
            peer.send(ProbeReply(req_id=message.req_id, seen=self.seen))

    def disconnected(self, peer: ClientPeer) -> None:
        self.events.append("disconnected")

    def statistics(self) -> dict[str, Any]:
        return {"seen": self.seen}

    def close(self) -> None:
        self.events.append("close")


def probe_factory(made: list[ProbeExtension]) -> ExtensionFactory:
    def factory(host: ExtensionHost) -> ProbeExtension:
        made.append(ProbeExtension(host))
        return made[-1]

    return factory


REPLIES = CORE_CODEC.extended((*BROKER_REPLIES, ProbeReply))


class Conversation:
    """One connection to the supervisor, spoken to in whole messages."""

    def __init__(self, supervisor: Supervisor, worker_id: int | None = None) -> None:
        self.conn = SupervisorConnection(supervisor, worker_id)
        self.transport = FakeTransport(self.conn)
        self.conn.connection_made(self.transport)
        self._decoder = FrameDecoder()

    async def exchange(self, *messages: WireMessage) -> list[WireMessage]:
        for message in messages:
            self.conn.data_received(encode_message(message))
        await asyncio.sleep(0)  # replies are written at the end of the loop turn
        frames = self._decoder.feed(bytes(self.transport.written))
        self.transport.written.clear()
        return [REPLIES.decode(frame) for frame in frames]


def run(check: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(check())  # type: ignore[arg-type]


def test_without_the_broker_extension_a_broker_message_is_refused_by_name() -> None:
    supervisor = Supervisor(CONFIG, extensions={})

    async def check() -> None:
        client = Conversation(supervisor)
        welcome, refusal = await client.exchange(
            CLIENT_HELLO, QueueDeclare(req_id=1, queue="celery")
        )
        assert isinstance(welcome, Welcome)
        known = ", ".join(sorted(MESSAGE_TAGS))
        assert refusal == Error(
            code="bad_message", message=f"unknown message type 'queue_declare'; known: {known}"
        )
        (status,) = await client.exchange(StatusRequest(req_id=2))  # still served
        assert isinstance(status, StatusReply) and "broker" not in status.status
        assert not client.transport.closing

    run(check)


def test_with_the_broker_extension_the_same_message_is_served() -> None:
    supervisor = Supervisor(CONFIG)  # extensions from the installed entry points

    async def check() -> None:
        client = Conversation(supervisor)
        replies = await client.exchange(CLIENT_HELLO, QueueDeclare(req_id=1, queue="celery"))
        assert replies[1:] == [BrokerOk(req_id=1, message_count=0, consumer_count=0)]
        assert supervisor.status()["broker"]["queues"] == {
            "celery": {"ready": 0, "held": 0, "unacked": 0, "consumers": 0}
        }

    run(check)


def test_status_shows_each_extensions_statistics_under_its_name() -> None:
    made: list[ProbeExtension] = []
    supervisor = Supervisor(CONFIG, extensions={"probe": probe_factory(made)})

    async def check() -> None:
        client = Conversation(supervisor)
        replies = await client.exchange(CLIENT_HELLO, Probe(req_id=1), Probe(req_id=2))
        assert replies[1:] == [ProbeReply(req_id=1, seen=1), ProbeReply(req_id=2, seen=2)]
        assert supervisor.status()["probe"] == {"seen": 2}
        (status,) = await client.exchange(StatusRequest(req_id=3))
        assert isinstance(status, StatusReply) and status.status["probe"] == {"seen": 2}

    run(check)
    assert len(made) == 1


def test_an_extension_hears_of_start_its_clients_leaving_and_close() -> None:
    made: list[ProbeExtension] = []
    supervisor = Supervisor(CONFIG, extensions={"probe": probe_factory(made)})
    (probe,) = made

    async def check() -> None:
        await supervisor.start()
        assert probe.events == ["start"]
        client = Conversation(supervisor)
        await client.exchange(CLIENT_HELLO)
        worker = Conversation(supervisor, worker_id=7)
        await worker.exchange(Hello(version=PROTOCOL_VERSION, role="worker", worker_id=7))
        worker.conn.connection_lost(None)
        assert probe.events == ["start"]  # a worker is no client of an extension
        client.conn.connection_lost(None)
        assert probe.events == ["start", "disconnected"]
        await supervisor.stop()

    run(check)
    assert probe.events == ["start", "disconnected", "close"]


def test_a_worker_connection_never_reaches_an_extension() -> None:
    made: list[ProbeExtension] = []
    supervisor = Supervisor(CONFIG, extensions={"probe": probe_factory(made)})

    async def check() -> None:
        worker = Conversation(supervisor, worker_id=7)
        welcome, refusal = await worker.exchange(
            Hello(version=PROTOCOL_VERSION, role="worker", worker_id=7), Probe(req_id=1)
        )
        assert isinstance(welcome, Welcome)
        assert isinstance(refusal, Error) and refusal.code == "bad_message"
        assert refusal.message.startswith("unknown message type 'probe'")

    run(check)
    assert made[0].seen == 0


def test_the_host_submits_a_job_as_a_client_would_and_knows_task_names() -> None:
    made: list[ProbeExtension] = []
    supervisor = Supervisor(CONFIG, extensions={"probe": probe_factory(made)})
    host = made[0].host
    assert host.is_task("tests.apps.basic.add")
    assert not host.is_task("tests.apps.basic.cached_then_fail")  # a workflow
    assert not host.is_task("tests.apps.basic.nothing_by_that_name")
    assert host.config is CONFIG

    async def check() -> None:
        client = Conversation(supervisor)
        _, accepted = await client.exchange(
            CLIENT_HELLO, Probe(req_id=1, submit="tests.apps.basic.add")
        )
        assert isinstance(accepted, Accepted) and accepted.req_id == 1
        (refused,) = await client.exchange(Probe(req_id=2, submit="no.such.task"))
        assert isinstance(refused, Error) and refused.req_id == 2
        assert supervisor.status()["runs_in_flight"] == 1  # the accepted one only

    run(check)


@pytest.mark.parametrize(
    ("factories", "expected"),
    [
        (
            {"clash": lambda host: ProbeExtension(host, (Clash,))},
            "tag 'submit' is declared by both",
        ),
        (
            {"one": ProbeExtension, "two": ProbeExtension},
            "extension 'two' declares Probe, which another extension already serves",
        ),
    ],
    ids=["tag of the core", "type of another extension"],
)
def test_a_message_type_served_twice_is_refused_when_the_supervisor_is_built(
    factories: dict[str, ExtensionFactory], expected: str
) -> None:
    with pytest.raises(ConfigurationError, match=expected):
        Supervisor(CONFIG, extensions=factories)


def test_the_broker_is_found_through_its_entry_point() -> None:
    from coda.broker.extension import BrokerExtension

    assert extension.discover_extensions() == {"broker": BrokerExtension}


def test_an_extension_that_cannot_be_loaded_is_named_with_what_to_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    broken = EntryPoint(
        "dashboard", "coda_missing_dashboard:Extension", extension.ENTRY_POINT_GROUP
    )
    monkeypatch.setattr(extension, "entry_points", lambda group: [broken])
    with pytest.raises(ConfigurationError) as refused:
        Supervisor(CONFIG)
    assert str(refused.value).startswith(
        "supervisor extension 'dashboard' (coda_missing_dashboard:Extension) cannot be loaded: "
    )
    assert str(refused.value).endswith("reinstall the package that provides it, or uninstall it")
