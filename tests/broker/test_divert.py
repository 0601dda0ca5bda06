"""Which coda:// messages become Coda jobs, and what those jobs carry."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec
import pytest

from coda.broker.divert import Diverter, DivertRules
from coda.broker.extension import BrokerExtension
from coda.broker.messages import ExchangeDeclare, Publish, QueueBind, QueueDeclare
from coda.broker.service import BrokerService
from coda.errors import ConfigurationError
from coda.messages import Submit
from coda.serialization import registry
from coda.supervisor import SupervisorConfig
from coda.supervisor.extension import ClientPeer
from tests.broker.fakes import FakeClock, FakePeer


def celery_publish(task: str, routing_key: str = "celery", eta: float | None = None) -> Publish:
    kombu = {
        "body": '[[6, 7], {}, {"callbacks": null}]',
        "content-type": "application/json",
        "content-encoding": "utf-8",
        "headers": {"task": task, "id": "tid-1"},
        "properties": {"delivery_info": {"exchange": "celery", "routing_key": routing_key}},
    }
    body = msgspec.msgpack.encode(kombu)
    return Publish("celery", routing_key, body, eta=eta, task_id="tid-1", task=task)


def test_rules_parse_and_match() -> None:
    rules = DivertRules.parse(["proj.a, queue:fast", "proj.b"])
    assert rules.tasks == {"proj.a", "proj.b"} and rules.queues == {"fast"}
    assert rules.matches("proj.a", []) and rules.matches("other", ["fast"])
    assert not rules.matches("other", ["slow"])
    assert DivertRules.parse(["*"]).matches("anything", [])
    assert not DivertRules.parse([])
    with pytest.raises(ConfigurationError):
        DivertRules.parse(["bad:rule"])


def test_a_diverted_message_becomes_a_job_carrying_the_celery_message() -> None:
    jobs: list[Submit] = []

    def submit(peer: ClientPeer, job: Submit) -> None:
        jobs.append(job)

    service = BrokerService(
        result_ttl=60,
        clock=FakeClock(),
        divert=Diverter(DivertRules.parse(["proj.mul"]), submit, lambda name: name != "proj.x"),
    )
    celery_worker = FakePeer()
    service.handle(celery_worker, QueueDeclare(req_id=1, queue="celery"))
    service.handle(celery_worker, ExchangeDeclare(req_id=2, exchange="celery"))
    service.handle(
        celery_worker, QueueBind(req_id=3, queue="celery", exchange="celery", routing_key="celery")
    )
    service.handle(celery_worker, celery_publish("proj.mul", eta=123.0))
    service.handle(celery_worker, celery_publish("proj.add"))
    (job,) = jobs
    assert (job.name, job.run_id, job.not_before) == ("proj.mul", "tid-1", 123.0)
    envelope = registry.loads(job.args.body, job.args.content_type, job.args.content_encoding)
    message = envelope["__celery__"]
    assert message["headers"]["id"] == "tid-1" and message["content_type"] == "application/json"
    assert message["body"] == b'[[6, 7], {}, {"callbacks": null}]'
    assert service.broker.size("celery") == 1  # proj.add stayed for the Celery workers


@dataclass
class FakeHost:
    """What a supervisor offers the broker extension, recorded."""

    config: SupervisorConfig
    clock: FakeClock = field(default_factory=FakeClock)
    submitted: list[Submit] = field(default_factory=list)

    def submit(self, peer: ClientPeer, message: Submit) -> None:
        self.submitted.append(message)

    def is_task(self, name: str) -> bool:
        return name.startswith("proj.")


def test_the_extension_diverts_through_its_host_what_the_rules_name() -> None:
    host = FakeHost(
        SupervisorConfig(
            celery_app="proj.celery:app", celery_divert=("queue:fast",), store="memory://"
        )
    )
    broker = BrokerExtension(host)
    producer = FakePeer()
    broker.handle(producer, ExchangeDeclare(req_id=1, exchange="celery"))
    for req_id, queue in enumerate(("fast", "celery"), start=2):
        broker.handle(producer, QueueDeclare(req_id=req_id, queue=queue))
        broker.handle(
            producer, QueueBind(req_id=req_id, queue=queue, exchange="celery", routing_key=queue)
        )
    broker.handle(producer, celery_publish("proj.mul", routing_key="fast"))
    broker.handle(producer, celery_publish("proj.add", routing_key="celery"))
    broker.handle(producer, celery_publish("other.add", routing_key="fast"))  # not a task here
    assert [job.name for job in host.submitted] == ["proj.mul"]
    assert broker.statistics()["queues"]["celery"]["ready"] == 1
    assert broker.statistics()["queues"]["fast"]["ready"] == 1


def test_the_extension_refuses_divert_rules_without_a_celery_app() -> None:
    with pytest.raises(ConfigurationError, match="--celery-divert needs --celery-app"):
        BrokerExtension(FakeHost(SupervisorConfig(celery_divert=("*",), store="memory://")))


def test_the_extension_keeps_results_for_the_supervisors_result_ttl() -> None:
    host = FakeHost(SupervisorConfig(result_ttl=30.0, store="memory://"))
    assert BrokerExtension(host).service.results.default_ttl == 30.0
