"""The engine's side of a fleet (fleet.py), with a fake database link and a
hand-driven clock: what is published, what is claimed, who is answered."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from coda.messages import CancelReply, CancelRun, Finished, Spawn, Started, Submit
from coda.supervisor.clock import ManualClock
from coda.supervisor.engine import Engine
from coda.supervisor.fleet import CLAIM_AHEAD, Fleet
from coda.supervisor.jobs import Job, JobState
from tests.unit.engine_fakes import ARGS, RESULT, FakePeer, make_engine, runs, sent, worker

ME = "me"


@dataclass
class FakeLink:
    """Records what the engine asks of the database; the test answers."""

    id: str = ME
    claims: list[tuple[str, tuple[str, ...], int, Callable[[list[Job]], None]]] = field(
        default_factory=list
    )
    fetches: list[tuple[list[str], Callable[[list[Job]], None]]] = field(default_factory=list)
    claim_ones: list[tuple[str, Callable[[list[Job]], None]]] = field(default_factory=list)
    asks: list[tuple[str, bool, Callable[[bool], None]]] = field(default_factory=list)

    def claim(
        self, kind: str, queues: tuple[str, ...], limit: int, done: Callable[[list[Job]], None]
    ) -> None:
        self.claims.append((kind, queues, limit, done))

    def claim_one(self, job_id: str, done: Callable[[list[Job]], None]) -> None:
        self.claim_ones.append((job_id, done))

    def fetch(self, job_ids: list[str], done: Callable[[list[Job]], None]) -> None:
        self.fetches.append((job_ids, done))

    def ask_cancel(self, job_id: str, terminate: bool, done: Callable[[bool], None]) -> None:
        self.asks.append((job_id, terminate, done))


@pytest.fixture
def link() -> FakeLink:
    return FakeLink()


@pytest.fixture
def lost() -> list[str]:
    return []


@pytest.fixture
def fleet_engine(clock: ManualClock, link: FakeLink, lost: list[str]) -> Engine:
    engine = make_engine(clock)
    engine.join_fleet(Fleet(link, engine, ("default",), lost.append))
    return engine


def published(job_id: str, kind: str = "task", owner: str | None = None) -> Job:
    """A job as another supervisor wrote it, claimed by this one."""
    job = Job(id=job_id, kind=kind, name="t" if kind == "task" else "w", args=ARGS, queue="default")
    return dataclasses.replace(job, owner=owner, epoch=1, created_at=1.0)


def test_a_submit_is_published_for_the_fleet_not_held_here(
    fleet_engine: Engine, clock: ManualClock
) -> None:
    client = FakePeer()
    fleet_engine.submit(client, Submit(req_id=1, name="t", args=ARGS, run_id="r", wait=True))
    clock.settle()
    assert "r" not in fleet_engine.live
    job = fleet_engine.store.get_job("r")
    assert job is not None and (job.owner, job.state) == (None, JobState.QUEUED)
    assert fleet_engine.waiters.waiting_for("r")  # answered when it ends, wherever


def test_workers_with_room_claim_once_per_kind_and_wait_for_news_when_dry(
    fleet_engine: Engine, clock: ManualClock, link: FakeLink
) -> None:
    w = worker(fleet_engine, 1, tasks=2, prefetch=1)
    clock.settle()
    task_claims = [c for c in link.claims if c[0] == "task"]
    assert [(k, q, n) for k, q, n, _ in task_claims] == [("task", ("default",), 3 * CLAIM_AHEAD)]
    fleet_engine.dispatch.schedule_pump()
    clock.settle()
    assert len([c for c in link.claims if c[0] == "task"]) == 1  # one claim in flight
    task_claims[0][3]([published("j1", owner=ME)])  # fewer than asked: dry for now
    clock.settle()
    (run,) = runs(w)
    assert run.job_id == "j1" and fleet_engine.live["j1"].owner == ME
    fleet_engine.dispatch.schedule_pump()
    clock.settle()
    assert len([c for c in link.claims if c[0] == "task"]) == 1  # dry: no claim until news
    fleet_engine.fleet.work_available()  # type: ignore[union-attr]
    clock.settle()
    assert len([c for c in link.claims if c[0] == "task"]) == 2


def test_a_spawn_stays_here_when_its_queue_is_consumed_here(
    fleet_engine: Engine, clock: ManualClock, link: FakeLink
) -> None:
    w = worker(fleet_engine, 1, tasks=1, workflows=1)
    clock.settle()
    (workflow_claim,) = [c for c in link.claims if c[0] == "workflow"]
    workflow_claim[3]([published("run", "workflow", owner=ME)])
    clock.settle()
    sent(w)
    fleet_engine.spawn(w, Spawn(req_id=1, run_id="run", kind="task", name="t", args=ARGS))
    fleet_engine.spawn(w, Spawn(req_id=2, run_id="run", kind="task", name="other_q", args=ARGS))
    clock.settle()
    local = [j for j in fleet_engine.live.values() if j.name == "t"]
    assert len(local) == 1 and (local[0].owner, local[0].epoch) == (ME, 1)
    assert [j for j in fleet_engine.live.values() if j.name == "other_q"] == []  # published


def test_whoever_waits_here_hears_of_a_job_that_ended_elsewhere(
    fleet_engine: Engine, clock: ManualClock, link: FakeLink
) -> None:
    client = FakePeer()
    fleet_engine.submit(client, Submit(req_id=1, name="t", args=ARGS, run_id="r", wait=True))
    clock.settle()
    client.take()
    fleet_engine.fleet.finished_elsewhere(["r", "nobody-waits"])  # type: ignore[union-attr]
    ((ids, done),) = link.fetches
    assert ids == ["r"]
    ended = dataclasses.replace(published("r", owner="other"), state=JobState.SUCCEEDED)
    ended.result, ended.finished_at = RESULT, 2.0
    done([ended])
    clock.settle()
    assert client.take() == [Finished(req_id=1, run_id="r", kind="task", result=RESULT)]


def test_a_cancel_of_a_job_held_elsewhere_is_forwarded_and_one_held_by_nobody_is_taken(
    fleet_engine: Engine, clock: ManualClock, link: FakeLink
) -> None:
    elsewhere = published("held", owner="other")
    fleet_engine.store.save_job(elsewhere)
    client = FakePeer()
    fleet_engine.cancel(client, CancelRun(req_id=1, run_id="held"))
    ((job_id, terminate, answer),) = link.asks
    assert (job_id, terminate) == ("held", False)
    answer(True)
    clock.settle()
    assert client.take() == [CancelReply(req_id=1, run_id="held", state="cancelling")]
    fleet_engine.submit(FakePeer(), Submit(req_id=2, name="t", args=ARGS, run_id="free"))
    clock.settle()
    fleet_engine.cancel(client, CancelRun(req_id=3, run_id="free"))
    ((claimed_id, take),) = link.claim_ones
    assert claimed_id == "free"
    take([published("free", owner=ME)])
    clock.settle()
    assert client.take() == [CancelReply(req_id=3, run_id="free", state="cancelled")]
    job = fleet_engine.store.get_job("free")
    assert job is not None and job.state is JobState.CANCELLED


def test_a_job_fenced_off_is_dropped_and_its_slot_freed(
    fleet_engine: Engine, clock: ManualClock, link: FakeLink
) -> None:
    w = worker(fleet_engine, 1, tasks=1)
    clock.settle()
    (claim,) = [c for c in link.claims if c[0] == "task"]
    claim[3]([published("j1", owner=ME)])
    clock.settle()
    (run,) = runs(w)
    fleet_engine.started(w, Started(job_id=run.job_id))
    fleet_engine.jobs.fenced_off({"j1"})  # another supervisor reclaimed it
    assert "j1" not in fleet_engine.live
    assert fleet_engine.in_flight() == 0


def test_a_lost_lease_stops_dispatching_and_says_why(
    fleet_engine: Engine, clock: ManualClock, link: FakeLink, lost: list[str]
) -> None:
    fleet_engine.fleet.lease_lost("no heartbeat for 23s")  # type: ignore[union-attr]
    assert lost == ["no heartbeat for 23s"]
    worker(fleet_engine, 1)
    clock.settle()
    assert link.claims == []  # nothing more is claimed, nothing is started
