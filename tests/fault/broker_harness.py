"""Fault harness, broker mode: Celery tasks through ``coda://`` while the
supervisor is killed, then counts.

    python -m tests.fault.broker_harness --tasks 200 --kill-supervisor 2 --seed 7

A supervisor with ``--workers 0`` on a SQLite store and a fixed port is the
broker and result backend of a stock ``celery worker`` (prefork,
``task_acks_late``: ``tests.apps.acks_late_app``) that stays up throughout.
A producer in this process publishes ``tasks`` tasks at ``rate`` per second
(publisher confirms on, retried under Celery's ``task_publish_retry_policy``)
while the supervisor's process group is killed with SIGKILL ``kills``
times, each at a random moment of the publishing (by progress), and
started again on the same store and port. Each task appends its number to
an execution log. At the end:

- *published*: publishes attempted; *confirmed*: those that returned (the
  rest raised after their retries: the producer knows they failed);
- *executed*: distinct tasks that ran; *lost*: confirmed tasks that never
  ran (must be 0); *executed more than once*: tasks whose acknowledgement
  died with a supervisor, so they were redelivered and ran again (at least
  once delivery, reported, not hidden);
- *results*: confirmed tasks whose result reads SUCCESS through the
  ``coda://`` backend at the end (must equal confirmed);
- whether the Celery worker survived every kill (it must).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from celery import Celery
from celery.result import AsyncResult

from coda.testing import wait_until
from tests.apps.acks_late_app import executions
from tests.broker.processes import CeleryWorker, RestartableBroker

__all__ = ["BrokerReport", "BrokerScenario", "run_broker_scenario"]

RECORD = "tests.apps.acks_late_app.record"
# long enough for a supervisor to start again (1-3 s on a busy 2-core machine)
PUBLISH_RETRY = {"max_retries": 60, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


@dataclass(frozen=True)
class BrokerScenario:
    tasks: int = 200
    kills: int = 2
    rate: float = 100.0  # publishes per second the producer aims at
    work_ms: tuple[float, float] = (2.0, 10.0)  # each task sleeps a random time in this range
    concurrency: int = 2  # the Celery worker's prefork processes
    seed: int = 1
    timeout: float = 180.0  # for every confirmed task to run, after the last publish

    def describe(self) -> str:
        return (
            f"{self.tasks} Celery tasks (acks_late) published at {self.rate:.0f}/s to coda:// "
            f"with confirms; 1 stock celery worker (prefork x {self.concurrency}); "
            f"{self.kills} SIGKILLs of the supervisor's process group, each followed by a restart "
            f"on the same SQLite store and port; seed {self.seed}"
        )


@dataclass
class BrokerReport:
    scenario: BrokerScenario
    published: int
    confirmed: set[int]
    executions: Counter[int]
    results: int
    kills: int
    worker_survived: bool
    seconds: float
    refusals: list[str] = field(default_factory=list)

    @property
    def executed(self) -> int:
        return len(self.executions)

    @property
    def lost(self) -> int:
        return len(self.confirmed - set(self.executions))

    @property
    def executed_twice(self) -> int:
        return sum(1 for count in self.executions.values() if count > 1)

    def violations(self) -> list[str]:
        checks = [
            (self.lost == 0, f"{self.lost} confirmed tasks never ran"),
            (self.results == len(self.confirmed), "a confirmed task has no SUCCESS result"),
            (self.worker_survived, "the Celery worker died"),
            (self.kills == self.scenario.kills, f"{self.kills} kills, not {self.scenario.kills}"),
        ]
        return [why for ok, why in checks if not ok]

    def format(self) -> str:
        return "\n".join(
            [
                f"broker mode: {self.scenario.describe()}",
                f"  published {self.published}, confirmed {len(self.confirmed)}, "
                f"executed {self.executed}, lost {self.lost}, "
                f"executed more than once {self.executed_twice}, "
                f"results {self.results}, worker survived {'yes' if self.worker_survived else 'NO'}"
                f", {self.kills} kills, {self.seconds:.1f}s",
                *(f"  publish failed: {why}" for why in self.refusals[:5]),
                *(f"  VIOLATION: {why}" for why in self.violations()),
            ]
        )


class Producer:
    """Publishes the tasks at the scenario's pace from this process."""

    def __init__(self, scenario: BrokerScenario, address: str, log: Path) -> None:
        url = f"coda://{address}"
        self.app = Celery("fault-producer", broker=url, backend=url)
        self.app.conf.update(task_publish_retry_policy=PUBLISH_RETRY, result_expires=3600)
        self.scenario = scenario
        self.log = str(log)
        self.rng = random.Random(scenario.seed)
        self.confirmed: set[int] = set()
        self.ids: dict[int, str] = {}
        self.refusals: list[str] = []
        self.published = 0
        self.progress = threading.Condition()

    def run(self) -> None:
        started = time.monotonic()
        for n in range(self.scenario.tasks):
            time.sleep(max(0.0, started + n / self.scenario.rate - time.monotonic()))
            work = self.rng.uniform(*self.scenario.work_ms)
            self.published += 1
            try:
                result = self.app.send_task(RECORD, (self.log, n, work))
            except Exception as exc:  # retries exhausted: the producer knows it failed
                self.refusals.append(f"task {n}: {type(exc).__name__}: {exc}")
            else:
                self.ids[n] = result.id
                self.confirmed.add(n)
            with self.progress:
                self.progress.notify_all()

    def wait_for(self, count: float) -> None:
        with self.progress:
            self.progress.wait_for(lambda: self.published >= count)

    def successes(self) -> int:
        return sum(
            1 for n in self.confirmed if AsyncResult(self.ids[n], app=self.app).state == "SUCCESS"
        )


def run_broker_scenario(scenario: BrokerScenario, workdir: Path) -> BrokerReport:
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "executions.log"
    started = time.monotonic()
    broker = RestartableBroker(workdir)
    worker: CeleryWorker | None = None
    kills = 0
    try:
        worker = CeleryWorker(
            broker.address,
            workdir / "worker.log",
            app="tests.apps.acks_late_app",
            concurrency=scenario.concurrency,
        )
        producer = Producer(scenario, broker.address, log)
        publishing = threading.Thread(target=producer.run, name="producer")
        publishing.start()
        rng = random.Random(scenario.seed + 1)
        for threshold in sorted(
            rng.uniform(0.1, 0.9) * scenario.tasks for _ in range(scenario.kills)
        ):
            producer.wait_for(threshold)
            broker.kill()
            broker.start()
            kills += 1
        publishing.join()
        confirmed = producer.confirmed
        wait_until(
            lambda: confirmed <= set(executions(str(log))) or not worker.alive,
            timeout=scenario.timeout,
            interval=0.2,
            what="every confirmed task to run",
        )
        results = producer.successes()
        survived = worker.alive
    finally:
        if worker is not None:
            worker.stop()
        broker.close()
    return BrokerReport(
        scenario=scenario,
        published=producer.published,
        confirmed=confirmed,
        executions=Counter(executions(str(log))),
        results=results,
        kills=kills,
        worker_survived=survived,
        seconds=time.monotonic() - started,
        refusals=producer.refusals,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fault.broker_harness", description=__doc__
    )
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--kill-supervisor", type=int, default=2)
    parser.add_argument("--rate", type=float, default=100.0, help="publishes per second")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="keep logs here")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    scenario = BrokerScenario(
        tasks=options.tasks,
        kills=options.kill_supervisor,
        rate=options.rate,
        concurrency=options.concurrency,
        seed=options.seed,
    )
    workdir = options.dir or Path(tempfile.mkdtemp(prefix="coda-fault-broker-"))
    report = run_broker_scenario(scenario, workdir)
    print(report.format(), flush=True)
    print(f"logs in {workdir}")
    return 1 if report.violations() else 0


if __name__ == "__main__":
    sys.exit(main())
