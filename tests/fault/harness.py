"""Fault harness: run workflows while killing workers or the supervisor, then
count what was accepted, completed, lost and executed twice.

    python -m tests.fault.harness --workflows 30 --kill-workers 6 --kill-supervisor 2

Four scenarios, each on a fresh supervisor (``coda.testing.SupervisorProcess``)
running ``tests.fault.app``:

- *worker kills*: SIGKILL of a random worker (a busy one when there is one)
  at random moments, spread over the run by progress thresholds so each
  lands while work is in flight; the pool replaces the dead workers.
  ``pinned_kills`` of them land mid-step by construction: a chosen step of a
  chosen workflow logs its start and waits on a gate, the harness kills the
  worker named in that line, then opens the gate.
- *supervisor kills*: SIGKILL of the supervisor's whole process group (it and
  its workers), then a restart on the same durable store and port. Clients
  see their connection drop, reconnect, resubmit with the same run id (a
  submit is idempotent by run id, so an in-doubt submit is safe to repeat)
  and wait again by run id.
- *backlog*: every workflow submitted at once, then worker kills at random
  moments spread over a stretch of time (not tied to progress), so each
  kill hits a worker driving many workflows.
- *poison*: a few workflows run a step that kills its worker every time,
  among innocent ones sharing the same workers; the poisoned runs must fail
  as ``coda.WorkerLost`` and no innocent run may.

The driver keeps ``in_flight`` workflows going with an ``AsyncClient``. At
the end every outcome is fetched a second time on a fresh connection, the
execution log is read (``tests.fault.ledger``) and a ``Report`` says which
guarantees held. The exit status is 1 if any did not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import IO, Any, TypeVar

from coda import AsyncClient, Client
from coda.errors import (
    CodaError,
    ConnectionLostError,
    RequestRefusedError,
    ResultTimeoutError,
    WorkflowFailed,
)
from coda.testing import SupervisorProcess
from tests.broker.processes import free_port
from tests.fault.app import pipeline, poisoned, step_keys
from tests.fault.ledger import read_ledger
from tests.fault.report import Report, Scenario
from tests.postgres import fresh_schema

__all__ = ["Report", "Scenario", "main", "run_scenario"]

T = TypeVar("T")
APP = "tests.fault.app"
RETRY_PAUSE = 0.05
FLEET_LEASE = 3.0  # seconds: a killed fleet member's jobs are reclaimed after this


class Supervisors:
    """The supervisors under test (one, or a fleet of ``scenario.fleet`` on one
    PostgreSQL database), each restarted on its own port and the same store."""

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self.scenario = scenario
        self.listens = [f"127.0.0.1:{free_port()}" for _ in range(max(1, scenario.fleet))]
        self.stderr: IO[bytes] = (workdir / "supervisor.log").open("ab")
        self.restarts = 0
        self.members: list[SupervisorProcess] = []
        try:
            for listen in self.listens:
                self.members.append(self._start(listen))
        except BaseException:
            self.close()
            raise

    def _start(self, listen: str) -> SupervisorProcess:
        args = ["--concurrency", str(self.scenario.concurrency), "--store", self.scenario.store]
        if self.scenario.fleet:
            args += ["--fleet-lease", str(FLEET_LEASE)]
        return SupervisorProcess(
            [APP],
            workers=self.scenario.workers,
            listen=listen,
            extra_args=[*args, "--log-level", "WARNING"],
            stderr=self.stderr,
        )

    @property
    def address(self) -> str:
        """Where the driver connects: the first supervisor."""
        return self.listens[0]

    def kill(self, index: int = 0) -> None:
        """SIGKILL one supervisor's process group."""
        self.members[index].kill()

    def restart(self, index: int = 0) -> None:
        """Start a killed supervisor again, on its port and store."""
        self.members[index].close()
        self.members[index] = self._start(self.listens[index])
        self.restarts += 1

    def workers(self) -> list[dict[str, Any]]:
        """Every worker of every supervisor that answers now."""
        found: list[dict[str, Any]] = []
        for listen in self.listens:
            with contextlib.suppress(CodaError, OSError), Client(listen) as client:
                found += client.status()["workers"]
        return found

    def close(self) -> None:
        for member in self.members:
            member.close()
        self.stderr.close()


class Driver:
    """Submits the workflows, waits for them, and survives supervisor restarts."""

    def __init__(self, scenario: Scenario, supervisors: Supervisors, log: Path) -> None:
        self.scenario = scenario
        self.supervisors = supervisors
        self.client = AsyncClient(supervisors.address)
        self.log = log
        self.rng = random.Random(scenario.seed)
        self.run_ids = [
            f"fault-{scenario.seed}-{i}-{os.urandom(4).hex()}" for i in range(scenario.workflows)
        ]
        pinned = self.rng.sample(range(scenario.workflows), scenario.pinned_kills)
        # run index -> (the step held open at its gate, the gate file)
        self.holds = {
            index: (self.rng.choice(step_keys(scenario.steps)), log.parent / f"gate-{index}")
            for index in pinned
        }
        self.deadline = time.monotonic() + scenario.timeout
        self.accepted: set[str] = set()
        self.results: dict[str, dict[str, str]] = {}
        self.failed: dict[str, str] = {}
        self.finished = 0
        self.progress = asyncio.Event()
        self.kills = 0
        unpinned = [i for i in range(scenario.workflows) if i not in self.holds]
        self.poisoned = set(self.rng.sample(unpinned, scenario.poisoned))

    async def retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        """Repeat ``call`` while the supervisor is unreachable (being restarted)."""
        while True:
            try:
                return await call()
            except ConnectionLostError:
                if time.monotonic() > self.deadline:
                    raise
                await asyncio.sleep(RETRY_PAUSE)

    async def run_all(self) -> None:
        gate = asyncio.Semaphore(self.scenario.in_flight)
        count = self.scenario.workflows
        spans = [
            [self.rng.uniform(*self.scenario.work_ms) for _ in range(self.scenario.steps + 1)]
            for _ in range(count)
        ]
        await asyncio.gather(*(self.run_one(i, spans[i], gate) for i in range(count)))

    async def run_one(self, index: int, work_ms: list[float], gate: asyncio.Semaphore) -> None:
        run_id = self.run_ids[index]
        args = {"log": str(self.log), "steps": self.scenario.steps, "work_ms": work_ms}
        workflow = poisoned if index in self.poisoned else pipeline
        if index in self.holds:
            hold, gate_file = self.holds[index]
            args.update(hold=hold, gate=str(gate_file))
        async with gate:
            await self.retrying(lambda: self.client.submit(workflow, args, run_id=run_id))
            self.accepted.add(run_id)
            try:
                self.results[run_id] = await self.retrying(lambda: self.wait(run_id))
            except (WorkflowFailed, RequestRefusedError, ResultTimeoutError) as exc:
                self.failed[run_id] = f"{type(exc).__name__}: {exc}"
            finally:
                self.finished += 1
                self.progress.set()

    async def wait(self, run_id: str) -> dict[str, str]:
        remaining = max(0.1, self.deadline - time.monotonic())
        result: dict[str, str] = await self.client.handle(run_id).result(timeout=remaining)
        return result

    async def until_finished(self, threshold: float) -> bool:
        """Wait until ``threshold`` runs finished; False if all are done."""
        while self.finished < threshold:
            self.progress.clear()
            await self.progress.wait()
        return self.finished < self.scenario.workflows

    def thresholds(self, kills: int, low: float, high: float) -> list[float]:
        return sorted(self.rng.uniform(low, high) * self.scenario.workflows for _ in range(kills))

    async def kill_workers(self) -> None:
        await asyncio.gather(self.kill_pinned(), self.kill_at_random())

    async def kill_pinned(self) -> None:
        """Kill the worker of each held step while its body waits at the gate."""
        for index, (key, gate_file) in sorted(self.holds.items()):
            await self.kill_held_step(self.run_ids[index], key)
            gate_file.touch()  # the step's rerun goes through

    async def kill_held_step(self, run_id: str, key: str) -> None:
        """Every execution of the step waits at the (still shut) gate, so one of
        the workers named in its ``start`` lines is alive and mid-step; kill it.
        (A random kill may have taken an earlier one: its rerun is next.)"""
        tried: set[int] = set()
        while time.monotonic() < self.deadline:
            for pid in self.step_starts(run_id, key):
                if pid in tried:
                    continue
                tried.add(pid)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    self.kills += 1
                    return
            await asyncio.sleep(RETRY_PAUSE)
        raise TimeoutError(f"step {key} of {run_id} never started")

    def step_starts(self, run_id: str, key: str) -> list[int]:
        """Pids of the workers that began the step, from the execution log."""
        text = self.log.read_text() if self.log.exists() else ""
        starts = (line.split() for line in text.splitlines() if line.startswith("start "))
        return [int(f[3]) for f in starts if f[1] == run_id and f[2] == key]

    async def kill_at_random(self) -> None:
        random_kills = self.scenario.kill_workers - self.scenario.pinned_kills
        for threshold in self.thresholds(random_kills, 0.0, 0.85):
            if not await self.until_finished(threshold):
                return
            await asyncio.sleep(self.rng.uniform(0, 0.03))  # a random moment within the step
            await self.kill_a_worker()

    async def kill_workers_over_time(self) -> None:
        """Kills at random moments over ``kill_over`` seconds from the start."""
        started = time.monotonic()
        moments = sorted(
            self.rng.uniform(0, self.scenario.kill_over) for _ in range(self.scenario.kill_workers)
        )
        for moment in moments:
            await asyncio.sleep(max(0.0, started + moment - time.monotonic()))
            if self.finished >= self.scenario.workflows:
                return
            await self.kill_a_worker()

    async def kill_a_worker(self) -> None:
        victim = await self.pick_worker()
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
            self.kills += 1

    async def pick_worker(self) -> int:
        """A random worker, preferring one that holds a task right now."""
        while True:
            workers = await asyncio.to_thread(self.supervisors.workers)
            busy = [w for w in workers if not str(w["tasks"]).startswith("0/")]
            if workers:
                return int(self.rng.choice(busy or workers)["pid"])
            await asyncio.sleep(RETRY_PAUSE)  # every worker is down: wait for a replacement

    async def kill_supervisor(self, supervisors: Supervisors) -> None:
        """Kill at each threshold; a killed supervisor is restarted in the
        background (in a fleet the others carry on meanwhile, and the next
        kill may land before it is back: on another member)."""
        restarting: dict[int, asyncio.Task[None]] = {}
        try:
            for threshold in self.thresholds(self.scenario.kill_supervisor, 0.05, 0.8):
                if not await self.until_finished(threshold):
                    return
                await asyncio.sleep(self.rng.uniform(0, 0.05))
                alive = [i for i in range(len(supervisors.members)) if i not in restarting]
                if not alive:  # a single supervisor still coming back
                    await asyncio.gather(*restarting.values())
                    restarting.clear()
                    alive = [0]
                victim = self.rng.choice(alive)
                supervisors.kill(victim)
                self.kills += 1
                restarting[victim] = asyncio.create_task(
                    asyncio.to_thread(supervisors.restart, victim)
                )
        finally:
            await asyncio.gather(*restarting.values(), return_exceptions=True)


async def drive(scenario: Scenario, supervisors: Supervisors, log: Path) -> Driver:
    driver = Driver(scenario, supervisors, log)
    if scenario.kill_supervisor:
        chaos = asyncio.create_task(driver.kill_supervisor(supervisors))
    elif scenario.kill_over:
        chaos = asyncio.create_task(driver.kill_workers_over_time())
    else:
        chaos = asyncio.create_task(driver.kill_workers())
    try:
        await driver.run_all()
    finally:
        chaos.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await chaos
        await driver.client.close()
    return driver


def refetch(address: str, results: dict[str, dict[str, str]]) -> dict[str, Any]:
    """Fetch every outcome again on a fresh connection: count those that
    differ, and those the supervisor no longer knows."""
    differing = forgotten = 0
    again: dict[str, Any] = {}
    with Client(address) as client:
        for run_id, first in results.items():
            try:
                again[run_id] = client.handle(run_id).result(timeout=30)
            except RequestRefusedError:
                forgotten += 1
                continue
            differing += again[run_id] != first
        restarts = int(client.status()["supervisor"]["worker_restarts"])
    return {
        "results": again,
        "differing": differing,
        "forgotten": forgotten,
        "worker_restarts": restarts,
    }


def run_scenario(name: str, scenario: Scenario, workdir: Path) -> Report:
    """A fleet gets a fresh PostgreSQL schema of its own, dropped at the end."""
    if scenario.fleet and not scenario.store.startswith("postgres"):
        with fresh_schema() as url:
            return run_scenario(name, replace(scenario, store=url), workdir)
    shutil.rmtree(workdir, ignore_errors=True)  # a reused --dir starts from nothing
    workdir.mkdir(parents=True)
    log = workdir / "executions.log"
    started = time.monotonic()
    supervisors = Supervisors(scenario, workdir)
    try:
        driver = asyncio.run(drive(scenario, supervisors, log))
        after = refetch(supervisors.address, driver.results)
    finally:
        supervisors.close()
    ledger = read_ledger(log)
    ledger.add_results(driver.results)
    ledger.add_results(after["results"])
    return Report(
        name=name,
        scenario=scenario,
        accepted=len(driver.accepted),
        results=driver.results,
        failed=driver.failed,
        kills=driver.kills,
        duplicate_completions=after["differing"],
        forgotten=after["forgotten"],
        ledger=ledger,
        worker_restarts=after["worker_restarts"],
        seconds=time.monotonic() - started,
    )


def worker_kills(base: Scenario, workdir: Path) -> Report:
    workdir = workdir / "worker-kills"
    scenario = replace(base, kill_supervisor=0, store=base.store or sqlite_in(workdir))
    return run_scenario("worker kills", scenario, workdir)


def supervisor_kills(base: Scenario, workdir: Path) -> Report:
    """With ``--store memory://`` this shows what a restart loses without a
    durable store: every run it held is reported lost."""
    workdir = workdir / "supervisor-kills"
    scenario = replace(base, kill_workers=0, pinned_kills=0, store=base.store or sqlite_in(workdir))
    return run_scenario("supervisor kills", scenario, workdir)


def backlog(base: Scenario, workdir: Path) -> Report:
    """Every workflow submitted at once; worker kills spread over ``kill_over`` s."""
    workdir = workdir / "backlog"
    scenario = replace(
        base,
        kill_supervisor=0,
        in_flight=base.workflows,
        pinned_kills=0,
        work_ms=(50.0, 150.0),  # long enough that the kills land on a backlog, not an empty pool
        kill_over=base.kill_over or 10.0,
        store=base.store or sqlite_in(workdir),
    )
    return run_scenario("backlog with worker kills over time", scenario, workdir)


def poison(base: Scenario, workdir: Path) -> Report:
    """``poisoned`` of the workflows run a worker-killing step; nobody else kills."""
    workdir = workdir / "poison"
    scenario = replace(
        base,
        kill_supervisor=0,
        kill_workers=0,
        pinned_kills=0,
        in_flight=base.workflows,
        poisoned=base.poisoned or 1,
        store=base.store or sqlite_in(workdir),
    )
    return run_scenario("a poison step among innocent workflows", scenario, workdir)


def sqlite_in(workdir: Path) -> str:
    return f"sqlite:///{workdir.resolve() / 'coda.sqlite3'}"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.fault.harness", description=__doc__)
    parser.add_argument("--workflows", type=int, default=30)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--kill-workers", type=int, default=6, help="0 skips that scenario")
    parser.add_argument("--kill-supervisor", type=int, default=2, help="0 skips that scenario")
    parser.add_argument(
        "--pinned-kills", type=int, default=2, help="worker kills made to land mid-step"
    )
    parser.add_argument(
        "--backlog-kills", type=int, default=0, help="worker kills of the backlog scenario; 0 skips"
    )
    parser.add_argument("--kill-over", type=float, default=10.0, help="seconds they spread over")
    parser.add_argument(
        "--poisoned", type=int, default=0, help="poisoned runs of the poison scenario (0 skips)"
    )
    parser.add_argument(
        "--fleet", type=int, default=0, help="supervisors sharing one PostgreSQL database"
    )
    parser.add_argument("--workers", type=int, default=3, help="worker processes per supervisor")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--in-flight", type=int, default=6)
    parser.add_argument("--store", default="", help="--store URL (default: SQLite in --dir)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--dir", type=Path, default=None, help="keep logs here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse(sys.argv[1:] if argv is None else argv)
    base = Scenario(
        fleet=options.fleet,
        workflows=options.workflows,
        steps=options.steps,
        workers=options.workers,
        concurrency=options.concurrency,
        in_flight=options.in_flight,
        kill_workers=options.kill_workers,
        kill_supervisor=options.kill_supervisor,
        pinned_kills=min(options.pinned_kills, options.kill_workers),
        store=options.store,
        seed=options.seed,
        timeout=options.timeout,
    )
    workdir = options.dir or Path(tempfile.mkdtemp(prefix="coda-fault-"))
    reports = []
    if options.kill_workers:
        reports.append(worker_kills(base, workdir))
        print(reports[-1].format(), flush=True)
    if options.kill_supervisor:
        reports.append(supervisor_kills(base, workdir))
        print(reports[-1].format(), flush=True)
    if options.backlog_kills:
        scenario = replace(base, kill_workers=options.backlog_kills, kill_over=options.kill_over)
        reports.append(backlog(scenario, workdir))
        print(reports[-1].format(), flush=True)
    if options.poisoned:
        reports.append(poison(replace(base, poisoned=options.poisoned), workdir))
        print(reports[-1].format(), flush=True)
    print(f"logs in {workdir}")
    return 1 if any(report.violations() for report in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
