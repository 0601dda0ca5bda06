"""The supervisor's Celery node without processes: pidbox in, replies out,
revokes and purges through a recorded host."""

from __future__ import annotations

import json
from typing import Any

import msgspec

from coda.broker.control import REVOKED_TASK, ControlNode
from coda.broker.divert import ENVELOPE
from coda.broker.messages import (
    Consume,
    ControlReply,
    ControlRequest,
    Deliver,
    ExchangeDeclare,
    Publish,
    QueueBind,
    QueueDeclare,
    QueuePurge,
)
from coda.broker.service import BrokerService
from coda.messages import Payload
from coda.serialization import registry
from coda.supervisor.extension import JobSummary
from tests.broker.fakes import FakeHost, FakePeer


def job_args(task_id: str, name: str = "proj.add", routing_key: str = "celery") -> Payload:
    envelope = {
        "headers": {"id": task_id, "task": name, "argsrepr": "(1, 2)", "kwargsrepr": "{}"},
        "properties": {"delivery_info": {"exchange": "", "routing_key": routing_key}},
        "body": b"[[1, 2], {}, {}]",
        "content_type": "application/json",
        "content_encoding": "utf-8",
    }
    content_type, encoding, data = registry.dumps({ENVELOPE: envelope}, "msgpack")
    return Payload(content_type, encoding, memoryview(data))


def summary(task_id: str, state: str, *, started: bool = False, **args: Any) -> JobSummary:
    return JobSummary(
        id=task_id,
        kind="task",
        name="proj.add",
        queue="default",
        state=state,
        args=job_args(task_id, **args),
        attempt=1,
        parent_run=None,
        ready_at=2_000_000.0 if state == "delayed" else None,
        started_at=1_000_000.0 if started else None,
        worker_pid=4242 if state == "running" else None,
        started=started,
    )


def setup() -> tuple[BrokerService, FakeHost, FakePeer]:
    host = FakeHost()
    service = BrokerService(result_ttl=60, clock=host.clock)
    service.node = ControlNode(host, service.broker)  # type: ignore[arg-type]
    caller = FakePeer()
    service.handle(caller, ExchangeDeclare(1, "celery.pidbox", type="fanout"))
    service.handle(caller, ExchangeDeclare(2, "reply.celery.pidbox", type="direct"))
    service.handle(caller, QueueDeclare(3, "oid.reply.celery.pidbox"))
    service.handle(caller, QueueBind(4, "oid.reply.celery.pidbox", "reply.celery.pidbox", "oid"))
    service.handle(caller, ExchangeDeclare(5, "celery"))
    service.handle(caller, QueueDeclare(6, "celery"))
    service.handle(caller, QueueBind(7, "celery", "celery", "celery"))
    caller.take()
    return service, host, caller


def broadcast(method: str, content_type: str = "application/json", **fields: Any) -> Publish:
    command = {
        "method": method,
        "arguments": fields.pop("arguments", {}),
        "destination": fields.pop("destination", None),
        "pattern": fields.pop("pattern", None),
        "matcher": fields.pop("matcher", None),
        "ticket": "t-1",
        "reply_to": {"exchange": "reply.celery.pidbox", "routing_key": "oid"},
    }
    body = (
        json.dumps(command).encode()
        if content_type == "application/json"
        else (msgspec.msgpack.encode(command))
    )
    kombu = {
        "body": body,
        "content-type": content_type,
        "content-encoding": "utf-8",
        "headers": {"clock": 1, "expires": 0},
        "properties": {},
    }
    return Publish("celery.pidbox", "", msgspec.msgpack.encode(kombu))


def replies(service: BrokerService, caller: FakePeer) -> list[dict[str, Any]]:
    """What reached the caller's reply queue, decoded as kombu would."""
    service.handle(caller, Consume(99, 1, "oid.reply.celery.pidbox", "c", no_ack=True))
    found = []
    for message in caller.take():
        if isinstance(message, Deliver):
            kombu = msgspec.msgpack.decode(message.body)
            assert kombu["headers"]["ticket"] == "t-1"
            if kombu["content-type"] == "application/json":
                found.append(json.loads(kombu["body"]))
            else:
                found.append(msgspec.msgpack.decode(kombu["body"]))
    return found


def test_ping_is_answered_on_the_reply_queue_in_the_callers_serializer() -> None:
    service, _host, caller = setup()
    service.handle(caller, broadcast("ping"))
    service.handle(caller, broadcast("ping", content_type="application/x-msgpack"))
    node = service.node
    assert node is not None
    assert replies(service, caller) == [{node.name: {"ok": "pong"}}] * 2


def test_a_command_for_other_nodes_is_not_answered_and_unknown_ones_are_refused() -> None:
    service, _host, caller = setup()
    service.handle(caller, broadcast("ping", destination=["celery@elsewhere"]))
    service.handle(caller, broadcast("pool_grow", arguments={"n": 2}))
    (answer,) = replies(service, caller)
    (reply,) = answer.values()
    assert "'pool_grow' is not supported by a Coda node" in reply["error"]


def test_patterns_address_nodes_as_kombu_matches_them_and_a_bad_one_addresses_none() -> None:
    service, _host, caller = setup()
    node = service.node
    assert node is not None
    service.handle(caller, broadcast("ping", pattern="coda@*", matcher="glob"))
    service.handle(caller, broadcast("ping", pattern="nobody@*", matcher="glob"))
    service.handle(caller, broadcast("ping", pattern=r"coda@.", matcher="pcre"))
    # kombu's pcre matcher is re.match: anchored at the start of the name
    service.handle(caller, broadcast("ping", pattern=r"@", matcher="pcre"))
    for malformed in ("(", "[", "*+"):
        service.handle(caller, broadcast("ping", pattern=malformed, matcher="pcre"))
    service.handle(caller, broadcast("ping", pattern="coda@*", matcher="no-such-matcher"))
    assert replies(service, caller) == [{node.name: {"ok": "pong"}}] * 2
    assert node.counts["unreadable"] == 4


def test_revoke_cancels_a_waiting_job_and_has_it_reported_revoked() -> None:
    service, host, caller = setup()
    host.live["t1"] = summary("t1", "delayed")
    host.live["t2"] = summary("t2", "running", started=True)
    service.handle(caller, broadcast("revoke", arguments={"task_id": ["t1", "t2"]}))
    assert host.cancelled == [("t1", False)]  # t2 runs to its end, as in Celery
    (report,) = host.submitted
    assert (report.name, report.run_id, report.queue) == (REVOKED_TASK, "t1.revoked", "default")
    args = registry.loads(report.args.body, report.args.content_type, report.args.content_encoding)
    assert args["terminated"] is False and args["envelope"]["headers"]["id"] == "t1"
    node = service.node
    assert node is not None and list(node.revoked) == ["t1", "t2"]


def test_revoke_with_terminate_stops_a_running_job() -> None:
    service, host, caller = setup()
    host.live["t2"] = summary("t2", "running", started=True)
    service.handle(caller, broadcast("revoke", arguments={"task_id": "t2", "terminate": True}))
    assert host.cancelled == [("t2", True)]
    assert registry.loads(host.submitted[0].args.body, "application/x-msgpack", "binary")[
        "terminated"
    ]


def test_scheduled_lists_delayed_jobs_and_held_broker_messages() -> None:
    service, host, caller = setup()
    host.live["t1"] = summary("t1", "delayed")
    kombu = {
        "body": b"[]",
        "content-type": "application/json",
        "headers": {"id": "held-1", "task": "proj.mul", "argsrepr": "(3,)"},
        "properties": {"priority": 5, "delivery_info": {"routing_key": "celery"}},
    }
    eta = host.clock.now + 60
    service.handle(caller, Publish("", "celery", msgspec.msgpack.encode(kombu), eta=eta))
    service.handle(caller, broadcast("scheduled"))
    ((entries,),) = (answer.values() for answer in replies(service, caller))
    assert [(e["request"]["id"], e["priority"]) for e in entries] == [("t1", 0), ("held-1", 5)]
    assert entries[1]["request"]["args"] == "(3,)" and entries[1]["eta"].endswith("+00:00")


def test_a_queue_purge_also_cancels_the_coda_jobs_routed_to_it() -> None:
    service, host, caller = setup()
    host.live["t1"] = summary("t1", "queued")
    host.live["t2"] = summary("t2", "delayed")
    host.live["t3"] = summary("t3", "running", started=True)  # running: not purged
    host.live["t4"] = summary("t4", "queued", routing_key="other")
    service.handle(caller, QueuePurge(8, "celery"))
    assert caller.take()[-1].message_count == 2  # type: ignore[attr-defined]
    assert sorted(run_id for run_id, _ in host.cancelled) == ["t1", "t2"]


def test_a_control_request_is_answered_directly() -> None:
    service, host, caller = setup()
    host.live["t1"] = summary("t1", "queued")
    service.handle(caller, ControlRequest(10, "purge", {"queues": ["celery"]}))
    service.handle(caller, ControlRequest(11, "stats"))
    purged, stats = caller.take()
    assert isinstance(purged, ControlReply) and purged.reply == {"purged": 1}
    assert isinstance(stats, ControlReply) and stats.reply["pool"]["processes"] == [4242]
    assert stats.reply["total"] == {"proj.add": 4}
