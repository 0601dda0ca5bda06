"""Three supervisors, one PostgreSQL database: one engine.

Real supervisors (``coda supervisor --store postgresql://...``), real workers,
the machine's PostgreSQL (a schema per test), and for the restart test a
PostgreSQL server of the test's own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from coda import Cancelled, Client
from coda.errors import RequestRefusedError
from coda.testing import SupervisorProcess, wait_until
from tests.apps.journal import lines
from tests.fleet.private_postgres import private_postgres
from tests.postgres import fresh_schema

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

LEASE = "3"  # seconds: a dead supervisor's jobs are reclaimed after this


def member(
    url: str, queues: str = "", lease: str = LEASE, extra: tuple[str, ...] = ()
) -> SupervisorProcess:
    """One supervisor of the fleet on ``url``, two workers, its workers up."""
    args = ["--fleet-lease", lease, *extra] + (["--queues", queues] if queues else [])
    apps = ["tests.apps.basic", "tests.apps.durable"]
    sup = SupervisorProcess(apps, workers=2, store=url, extra_args=args)
    wait_until(lambda: len(sup.status()["workers"]) == 2, what="its workers")
    return sup


@contextlib.contextmanager
def fleet(
    url: str,
    count: int = 3,
    queues: list[str] | None = None,
    lease: str = LEASE,
    extra: tuple[str, ...] = (),
) -> Iterator[list[SupervisorProcess]]:
    """``count`` supervisors on one store; ``queues[i]`` is the ``--queues``
    of the i-th (default: default); ``extra``: more options for each."""
    with contextlib.ExitStack() as stack:
        yield [
            stack.enter_context(member(url, (queues or [""] * count)[i], lease, extra))
            for i in range(count)
        ]


def submit_until_accepted(client: Client, name: str, args: dict[str, object]) -> str:
    """Submit, again while the store cannot commit (the database restarts)."""

    def attempt() -> str | None:
        try:
            return client.submit(name, args).run_id
        except RequestRefusedError as exc:
            assert exc.code == "store_unavailable", exc
            return None

    run_id: str = wait_until(attempt, timeout=60, interval=0.1, what="a submit accepted")
    return run_id


@pytest.fixture
def store_url() -> Iterator[str]:
    with fresh_schema() as url:
        yield url


def test_a_run_submitted_to_one_supervisor_is_answered_by_any(store_url: str) -> None:
    with fleet(store_url) as (a, b, c), a.client() as ca, b.client() as cb, c.client() as cc:
        handles = [ca.submit("tests.apps.basic.add", {"x": i, "y": 1}) for i in range(30)]
        assert [cb.handle(h.run_id).result(timeout=60) for h in handles] == list(range(1, 31))
        assert cc.handle(handles[0].run_id).result(timeout=10) == 1
        status = ca.status()["fleet"]
        assert len(status["members"]) == 3
        assert status["unclaimed"] == {}


def test_a_dedicated_queue_runs_only_on_the_supervisor_that_consumes_it(store_url: str) -> None:
    with fleet(store_url, queues=["", "", "special"]) as (a, b, c), a.client() as ca:
        handles = [ca.submit("tests.apps.basic.special_add", {"x": i, "y": 1}) for i in range(6)]
        assert [h.result(timeout=60) for h in handles] == list(range(1, 7))
        ran = {view.id: view for view in ca.runs(name="tests.apps.basic.special_add", limit=10)}
        assert set(ran) == {h.run_id for h in handles}
        with c.client() as cc:  # every one of them ran on c's workers
            assert cc.status()["names"]["tests.apps.basic.special_add"]["succeeded"] == 6
        for other in (a, b):
            with other.client() as client:
                assert "tests.apps.basic.special_add" not in client.status()["names"]


def test_work_and_results_cross_the_fleet_by_notification_not_by_polling(
    store_url: str,
) -> None:
    """With the fallback poll an hour away, a job only c's workers consume
    still reaches c at once (NOTIFY on the work channel), and its result the
    client waiting on a (NOTIFY on the done channel)."""
    no_polling = ("--fleet-poll", "3600")
    with (
        fleet(store_url, 2, queues=["", "special"], extra=no_polling) as (a, c),
        a.client() as ca,
    ):
        for i in range(3):  # each one a new notification, after the fleet is idle
            assert ca.run("tests.apps.basic.special_add", {"x": i, "y": 1}, timeout=30) == i + 1
        with c.client() as cc:
            assert cc.status()["names"]["tests.apps.basic.special_add"]["succeeded"] == 3


def test_killing_one_supervisor_loses_no_run_and_reruns_no_cached_step(
    store_url: str, tmp_path: Path
) -> None:
    journal, gate = str(tmp_path / "journal"), str(tmp_path / "gate")
    runs = 6
    a = member(store_url)  # alone at first: it claims every run
    try:
        killed_mid_run(a, store_url, journal, gate, runs)
    finally:
        a.close()


def killed_mid_run(
    a: SupervisorProcess, store_url: str, journal: str, gate: str, runs: int
) -> None:
    with a.client() as ca:
        handles = [
            ca.submit("tests.apps.durable.pipeline", {"path": journal, "i": i, "gate": gate})
            for i in range(runs)
        ]
        wait_until(
            lambda: sum(line.endswith("-start") for line in lines(journal)) >= 2,
            what="held steps running on its workers, first steps cached",
        )
    with member(store_url) as b, member(store_url):
        a.kill()  # kill -9 of its whole process group, mid-run
        Path(gate).touch()
        with Client(b.address) as client:  # the others take its runs after its lease
            results = [client.handle(h.run_id).result(timeout=120) for h in handles]
        assert results == [[f"a{i}", f"g{i}", f"b{i}"] for i in range(runs)]
        recorded = lines(journal)
        for i in range(runs):
            assert recorded.count(f"a{i}") == 1  # cached before the kill: never again
            assert recorded.count(f"b{i}") == 1
            assert recorded.count(f"g{i}") in (1, 2)  # at least once: it may have been cut


def test_a_postgresql_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    url = "{}?schema=fleet"
    journal, gate = str(tmp_path / "journal"), str(tmp_path / "gate")
    with private_postgres() as server, fleet(url.format(server.url), 2, lease="30") as (a, b):
        with a.client() as ca:
            held = [
                ca.submit(
                    "tests.apps.durable.held", {"path": journal, "label": f"h{i}", "gate": gate}
                )
                for i in range(2)
            ]
            first = [ca.submit("tests.apps.basic.add", {"x": i, "y": 1}).run_id for i in range(20)]
            # steps are running (and more are queued) when the database goes
            started = lambda: [line for line in lines(journal) if line.endswith("-start")]  # noqa: E731
            wait_until(lambda: len(started()) == 2, what="2 held steps running")
            server.restart()  # connections cut; the supervisors carry on
            second = [
                submit_until_accepted(ca, "tests.apps.basic.add", {"x": i, "y": 2})
                for i in range(20)
            ]
            Path(gate).touch()
            assert sorted(h.result(timeout=60) for h in held) == ["h0", "h1"]
        with b.client() as cb:
            assert [cb.handle(i).result(timeout=60) for i in first] == list(range(1, 21))
            assert [cb.handle(i).result(timeout=60) for i in second] == list(range(2, 22))
        assert a.process.poll() is None and b.process.poll() is None


def test_any_supervisor_cancels_a_run_another_one_holds(store_url: str, tmp_path: Path) -> None:
    journal, gate = str(tmp_path / "journal"), str(tmp_path / "gate")
    a = member(store_url)  # alone: it claims the run
    try:
        with a.client() as ca:
            run = ca.submit("tests.apps.durable.pipeline", {"path": journal, "i": 0, "gate": gate})
            wait_until(lambda: "g0-start" in lines(journal), what="the run mid-way, on a")
        with member(store_url) as b, b.client() as cb:
            assert cb.cancel(run.run_id) == "cancelling"  # forwarded to a
            with pytest.raises(Cancelled):
                cb.handle(run.run_id).result(timeout=60)
            (view,) = cb.runs(name="tests.apps.durable.pipeline", limit=1)
            assert (view.id, view.state) == (run.run_id, "cancelled")
    finally:
        a.close()
        Path(gate).touch()


def test_a_schedule_ticks_once_across_the_fleet(store_url: str, tmp_path: Path) -> None:
    """Every supervisor runs the scheduler; each tick is still one run, run once."""
    journal = tmp_path / "ticks.log"
    env = {"CODA_TEST_SCHEDULE_JOURNAL": str(journal)}
    task = "tests.apps.scheduled.every_second"

    def ticks() -> list[str]:
        return [line for line in lines(str(journal)) if line.startswith(task + "@")]

    with contextlib.ExitStack() as stack:
        members = [
            stack.enter_context(
                SupervisorProcess(
                    ["tests.apps.scheduled"],
                    workers=1,
                    store=store_url,
                    env=env,
                    extra_args=["--fleet-lease", LEASE],
                )
            )
            for _ in range(2)
        ]
        wait_until(lambda: len(members[0].status()["fleet"]["members"]) == 2, what="both joined")
        first = len(ticks())
        wait_until(lambda: len(ticks()) >= first + 5, timeout=60, what="five ticks with both up")
        recorded = ticks()
        with members[1].client() as client:
            runs = client.runs(name=task, limit=1000)
    assert len(recorded) == len(set(recorded))  # no tick ran twice
    submitted = [run.id for run in runs]
    assert len(submitted) == len(set(submitted))  # no tick was submitted twice
    assert set(recorded) <= set(submitted)  # each tick that ran is one run of the fleet
    succeeded = {run.id for run in runs if run.state == "succeeded"}
    assert succeeded <= set(recorded)  # a run the store calls done ran (once, above)
