"""Which coda:// messages become Coda jobs, and what those jobs carry."""

from __future__ import annotations

import msgspec
import pytest

from coda.broker_messages import ExchangeDeclare, Publish, QueueBind, QueueDeclare
from coda.errors import ConfigurationError
from coda.messages import Submit
from coda.serialization import registry
from coda.supervisor.broker_divert import Diverter, DivertRules
from coda.supervisor.broker_service import BrokerService
from coda.supervisor.dispatch import Peer
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

    def submit(peer: Peer, job: Submit) -> None:
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
