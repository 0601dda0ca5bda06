"""The supervisor's result store and the broker service's dispatch, with fakes."""

from __future__ import annotations

from coda.broker.messages import (
    BasicGet,
    BrokerOk,
    ChordPart,
    ChordReply,
    ChordStart,
    Consume,
    ExchangeDeclare,
    Publish,
    QueueBind,
    QueueDeclare,
    ResultEntry,
    ResultFetch,
    ResultSave,
    ResultValues,
    ResultWait,
)
from coda.broker.results import ResultStore
from coda.broker.service import BrokerService
from coda.messages import Error
from tests.broker.fakes import FakeClock, FakePeer


def store(ttl: float = 100.0) -> tuple[ResultStore, FakeClock]:
    clock = FakeClock()
    return ResultStore(clock, default_ttl=ttl), clock


def save(s: ResultStore, task_id: str, state: str, value: bytes = b"v", **kw: object) -> None:
    s.save(ResultSave(req_id=1, id=task_id, value=value, state=state, **kw))  # type: ignore[arg-type]


def fetch(s: ResultStore, *ids: str, kind: str = "task") -> list[ResultEntry]:
    return s.fetch(ResultFetch(req_id=1, ids=list(ids), kind=kind))  # type: ignore[arg-type]


def test_save_fetch_and_success_is_never_overwritten() -> None:
    s, _ = store()
    save(s, "a", "STARTED", b"1")
    save(s, "a", "SUCCESS", b"2")
    save(s, "a", "FAILURE", b"3")  # a lost worker's late rerun
    save(s, "g", "SUCCESS", b"group", kind="group")
    a, missing = fetch(s, "a", "nope")
    assert (a.state, a.value) == ("SUCCESS", b"2")
    assert missing == ResultEntry(id="nope")
    assert fetch(s, "g", kind="group")[0].value == b"group"
    assert fetch(s, "g")[0].state is None  # groups and tasks do not share ids


def test_wait_is_answered_by_a_push_when_ready() -> None:
    s, _ = store()
    waiter = FakePeer()
    s.wait(waiter, ResultWait(req_id=5, id="a"))
    save(s, "a", "STARTED")
    assert waiter.take() == []
    save(s, "a", "SUCCESS", b"42")
    (reply,) = waiter.take()
    assert isinstance(reply, ResultValues) and reply.req_id == 5
    assert reply.entries[0].value == b"42"
    s.wait(waiter, ResultWait(req_id=6, id="a"))  # already ready: at once
    assert [m.req_id for m in waiter.take()] == [6]  # type: ignore[attr-defined]


def test_disconnected_waiters_are_forgotten() -> None:
    s, _ = store()
    gone = FakePeer()
    s.wait(gone, ResultWait(req_id=1, id="a"))
    s.disconnected(gone)
    save(s, "a", "SUCCESS")
    assert gone.take() == [] and s.statistics()["waiters"] == 0


def test_results_expire_after_their_ttl() -> None:
    s, clock = store(ttl=100)
    save(s, "short", "SUCCESS", ttl=5.0)
    save(s, "default", "SUCCESS")
    clock.advance(6)
    assert fetch(s, "short")[0].state is None
    assert fetch(s, "default")[0].state == "SUCCESS"
    clock.advance(100)
    assert s.statistics()["records"] == 0


def test_an_expired_message_marks_its_task_revoked_unless_final() -> None:
    s, _ = store()
    waiter = FakePeer()
    s.wait(waiter, ResultWait(req_id=1, id="t"))
    s.mark_revoked("t")
    (reply,) = waiter.take()
    assert reply.entries[0] == ResultEntry(id="t", state="REVOKED", note="expired")  # type: ignore[attr-defined]
    save(s, "done", "SUCCESS")
    s.mark_revoked("done")
    assert fetch(s, "done")[0].state == "SUCCESS"


def test_chord_joins_exactly_once_in_header_order() -> None:
    s, _ = store()
    s.chord_start(ChordStart(req_id=1, group_id="g", members=["a", "b", "c"]))

    def part(task_id: str, group_id: str = "g") -> ChordReply:
        value = task_id.encode()
        return s.chord_part(ChordPart(req_id=1, group_id=group_id, task_id=task_id, value=value))

    assert not part("c").complete
    assert not part("a").complete
    assert not part("a").complete  # a redelivered header task
    done = part("b", group_id="inner")  # found through its member id
    assert done.complete and done.values == [b"a", b"b", b"c"]
    assert not part("c").complete  # never twice
    assert s.chord_part(ChordPart(req_id=1, group_id="x", task_id="y", value=b"")).unknown


def test_service_answers_requests_and_refusals_carry_the_request_id() -> None:
    service = BrokerService(result_ttl=60, clock=FakeClock())
    p = FakePeer()
    service.handle(p, QueueDeclare(req_id=1, queue="q"))
    service.handle(p, ExchangeDeclare(req_id=2, exchange="x"))
    service.handle(p, QueueBind(req_id=3, queue="q", exchange="x", routing_key="q"))
    service.handle(p, Publish(exchange="x", routing_key="q", body=b"m"))
    service.handle(p, QueueDeclare(req_id=4, queue="q", passive=True))
    service.handle(p, QueueBind(req_id=5, queue="nope", exchange="x"))
    service.handle(p, BasicGet(req_id=6, channel=1, queue="q", no_ack=True))
    service.handle(p, BasicGet(req_id=7, channel=1, queue="q"))
    service.handle(p, Consume(req_id=8, channel=1, queue="nope", consumer_tag="c"))
    sent = p.take()
    assert [type(m).__name__ for m in sent] == [
        "BrokerOk",
        "BrokerOk",
        "BrokerOk",
        "BrokerOk",
        "Error",
        "Deliver",
        "BrokerOk",
        "Error",
    ]
    assert sent[3] == BrokerOk(req_id=4, message_count=1)
    assert isinstance(sent[4], Error) and sent[4].req_id == 5 and sent[4].code == "not_found"
    service.disconnected(p)
    assert service.statistics()["connections"] == 0
