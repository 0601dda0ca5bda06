"""A supervisor's membership of a fleet: the database's side, on threads.

Supervisors started with the same PostgreSQL database (and schema) form one
fleet. Each one:

- *joins*: a row in ``coda_supervisors`` with a lease, renewed by a
  heartbeat every quarter of the lease (``lease_until`` is on the
  database's clock, so hosts' clocks need not agree);
- *reclaims* for everyone, at each heartbeat, the jobs of supervisors whose
  lease expired: they are released (``owner`` NULL; a running one is
  queued again, counted as interrupted) for any supervisor to claim, and
  the dead supervisor's row is deleted;
- *claims* jobs nobody holds from the queues its workers consume, with
  ``FOR UPDATE SKIP LOCKED``, each claim raising the job's ``epoch`` (writes
  are fenced by it, see rows.py);
- *listens*: new work, jobs that ended, cancels to forward, arrive as
  ``NOTIFY``; when nothing arrives for ``FALLBACK_POLL`` seconds it looks for
  work anyway (a notification lost while a connection was down), and after
  a reconnection it says so, so the engine catches up.

A supervisor whose heartbeat has not succeeded for three quarters of the
lease presumes its lease lost, before anyone else can reclaim its jobs (at
the full lease), and says so (``lease_lost``); so does one whose row was
deleted. The engine then stops.

Everything here runs on its own threads with its own connections from the
store's pool and reports to the engine through ``Clock.defer_threadsafe``.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FuturesTimeout
from typing import Protocol, TypeVar, cast

import psycopg

from ...clock import Clock
from ...jobs import Job, JobState
from ..codec import decode_job
from .rows import Pool
from .schema import Connection, PostgresUrl, connect

__all__ = ["FALLBACK_POLL", "FleetEvents", "PostgresFleet"]

log = logging.getLogger("coda.fleet")

T = TypeVar("T")

FALLBACK_POLL = 5.0  # seconds without a notification before looking for work anyway
STOP_CHECK = 0.25  # seconds the listener waits on its socket between looks at stop()
NOW = "extract(epoch from clock_timestamp())"

CLAIM = f"""
UPDATE coda_jobs AS j SET owner = %(me)s, epoch = j.epoch + 1,
    state = CASE WHEN j.state = 'delayed' THEN 'queued' ELSE j.state END
FROM (
    SELECT id FROM coda_jobs
    WHERE owner IS NULL AND finished_at IS NULL AND kind = %(kind)s
        AND queue = ANY(%(queues)s)
        AND (state = 'queued' OR (state = 'delayed' AND ready_at <= {NOW}))
    ORDER BY created_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS picked
WHERE j.id = picked.id
RETURNING j.body, j.args, j.state, j.epoch, j.losses, j.cancel_requested
"""
CLAIM_ONE = """
UPDATE coda_jobs AS j SET owner = %(me)s, epoch = j.epoch + 1
FROM (
    SELECT id FROM coda_jobs WHERE id = %(id)s AND owner IS NULL AND finished_at IS NULL
    FOR UPDATE SKIP LOCKED
) AS picked
WHERE j.id = picked.id
RETURNING j.body, j.args, j.state, j.epoch, j.losses, j.cancel_requested
"""
HEARTBEAT = f"UPDATE coda_supervisors SET lease_until = {NOW} + %s WHERE id = %s RETURNING id"
JOIN = f"""
INSERT INTO coda_supervisors (id, host, pid, queues, started_at, lease_until)
VALUES (%s, %s, %s, %s, {NOW}, {NOW} + %s)
"""
RECLAIM = f"""
WITH dead AS (
    DELETE FROM coda_supervisors WHERE lease_until < {NOW} RETURNING id
), freed AS (
    UPDATE coda_jobs SET owner = NULL,
        losses = losses + CASE WHEN state = 'running' THEN 1 ELSE 0 END,
        state = CASE WHEN state = 'running' THEN 'queued' ELSE state END
    WHERE owner IN (SELECT id FROM dead) AND finished_at IS NULL
    RETURNING queue
)
SELECT DISTINCT queue FROM freed
"""
RELEASE = """
UPDATE coda_jobs SET owner = NULL,
    state = CASE WHEN state = 'running' THEN 'queued' ELSE state END
WHERE owner = %s AND finished_at IS NULL
RETURNING queue
"""
ASK_CANCEL = """
UPDATE coda_jobs SET cancel_requested = true WHERE id = %s AND finished_at IS NULL
RETURNING owner
"""


class LeaseGone(Exception):
    """The fleet removed this supervisor: its lease had expired."""


class Database(Protocol):
    """What the fleet uses of the store (``PostgresStore``)."""

    pool: Pool
    url: PostgresUrl
    channels: dict[str, str]

    def read_jobs(self, job_ids: list[str]) -> list[Job]: ...


class FleetEvents(Protocol):
    """What the fleet tells the engine (always on the engine's thread)."""

    def work_available(self) -> None: ...

    def finished_elsewhere(self, job_ids: list[str]) -> None: ...

    def cancel_requested(self, job_id: str, terminate: bool) -> None: ...

    def lease_lost(self, reason: str) -> None: ...

    def reconnected(self) -> None: ...


class PostgresFleet:
    def __init__(
        self,
        store: Database,
        clock: Clock,
        *,
        supervisor_id: str,
        queues: tuple[str, ...],
        lease: float,
        poll: float = FALLBACK_POLL,
    ) -> None:
        self.store = store
        self.id = supervisor_id
        self.queues = list(queues)
        self.lease = lease
        self.poll = poll  # seconds without a notification before looking for work anyway
        self._clock = clock
        self._events: FleetEvents | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._work = ThreadPoolExecutor(2, thread_name_prefix="coda-fleet")
        self.last_heartbeat = time.monotonic()
        self.reclaimed = 0

    # -- membership -----------------------------------------------------------

    def join(self) -> None:
        """Register this supervisor (blocking, at start)."""
        with self.store.pool.connection() as conn, conn.transaction():
            params = (self.id, socket.gethostname(), os.getpid(), self.queues, self.lease)
            conn.execute(JOIN, params)
        self.last_heartbeat = time.monotonic()

    def start(self, events: FleetEvents) -> None:
        self._events = events
        for target, name in ((self._heartbeats, "heartbeat"), (self._listen, "listen")):
            thread = threading.Thread(target=target, name=f"coda-fleet-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def leave(self) -> int:
        """Release the unfinished jobs this supervisor holds, so others take
        them at once, and leave the fleet (a clean stop); how many."""
        with self.store.pool.connection() as conn, conn.transaction():
            rows = conn.execute(RELEASE, (self.id,)).fetchall()
            queues, released = {str(row[0]) for row in rows}, len(rows)
            conn.execute("DELETE FROM coda_supervisors WHERE id = %s", (self.id,))
            for queue in sorted(queues):
                conn.execute("SELECT pg_notify(%s, %s)", (self.store.channels["work"], queue))
        return released

    def stop(self) -> None:
        self._stopping.set()
        for thread in self._threads:
            thread.join(timeout=10)
        self._work.shutdown(wait=True)

    # -- work ---------------------------------------------------------------------

    def claim(
        self, kind: str, queues: tuple[str, ...], limit: int, done: Callable[[list[Job]], None]
    ) -> None:
        """Claim up to ``limit`` jobs nobody holds; ``done(jobs)`` on the
        engine's thread (an empty list when the database is unreachable)."""
        params: dict[str, object] = {
            "me": self.id,
            "kind": kind,
            "queues": list(queues),
            "limit": limit,
        }
        self._in_thread(lambda: self._claimed(CLAIM, params), done, _no_jobs())

    def claim_one(self, job_id: str, done: Callable[[list[Job]], None]) -> None:
        """Claim one job by id if nobody holds it (to cancel it here)."""
        params: dict[str, object] = {"me": self.id, "id": job_id}
        self._in_thread(lambda: self._claimed(CLAIM_ONE, params), done, _no_jobs())

    def fetch(self, job_ids: list[str], done: Callable[[list[Job]], None]) -> None:
        """Read jobs that ended elsewhere; ``done(jobs)`` on the engine's thread."""
        self._in_thread(lambda: self.store.read_jobs(job_ids), done, _no_jobs())

    def ask_cancel(self, job_id: str, terminate: bool, done: Callable[[bool], None]) -> None:
        """Mark a job another supervisor holds for cancelling, and tell it;
        ``done(False)`` if the job has ended meanwhile."""

        def ask() -> bool:
            with self.store.pool.connection() as conn, conn.transaction():
                if conn.execute(ASK_CANCEL, (job_id,)).fetchone() is None:
                    return False
                payload = f"{job_id} {int(terminate)}"
                conn.execute("SELECT pg_notify(%s, %s)", (self.store.channels["cancel"], payload))
            return True

        self._in_thread(ask, done, False)

    def statistics(self) -> dict[str, object]:
        """The fleet's members and the jobs waiting for a claim, per queue."""
        with self.store.pool.connection() as conn:
            members = conn.execute(
                f"SELECT id, host, pid, queues, lease_until - {NOW} "
                "FROM coda_supervisors ORDER BY id"
            ).fetchall()
            waiting = conn.execute(
                "SELECT queue, count(*) FROM coda_jobs WHERE owner IS NULL AND finished_at IS NULL "
                "GROUP BY queue ORDER BY queue"
            ).fetchall()
        return {
            "supervisor": self.id,
            "members": [
                {"id": m[0], "host": m[1], "pid": m[2], "queues": m[3], "lease_left": m[4]}
                for m in members
            ],
            "unclaimed": {str(queue): int(str(count)) for queue, count in waiting},
            "reclaimed": self.reclaimed,
        }

    # -- threads --------------------------------------------------------------

    def _in_thread(self, work: Callable[[], T], done: Callable[[T], None], failed: T) -> None:
        """``work()`` on a fleet thread, then ``done(outcome)`` on the
        engine's; ``failed`` is the outcome when the database errs."""

        def run() -> None:
            try:
                outcome = work()
            except psycopg.Error as exc:
                log.warning("fleet: database call failed (the next event retries): %s", exc)
                outcome = failed
            self._clock.defer_threadsafe(lambda: done(outcome))

        if not self._stopping.is_set():
            self._work.submit(run)

    def _claimed(self, sql: str, params: dict[str, object]) -> list[Job]:
        with self.store.pool.connection() as conn, conn.transaction():
            rows = conn.execute(sql, params).fetchall()
        jobs = []
        for body, args, state, epoch, losses, cancel_requested in rows:
            job = decode_job(_as_bytes(body), _as_bytes(args))
            job.state = JobState(str(state))
            job.owner, job.epoch, job.worker = self.id, int(str(epoch)), None
            job.losses = int(str(losses))
            job.cancelling = job.cancelling or bool(cancel_requested)
            jobs.append(job)
        return jobs

    def _heartbeats(self) -> None:
        """Every quarter lease, a heartbeat; the beat runs on a thread of its
        own and is waited for a quarter lease at most, so that a database
        that hangs (a dead link, no error) stops this supervisor after three
        quarters of its lease as surely as one that fails, before the others
        take over its jobs."""
        beats = ThreadPoolExecutor(1, thread_name_prefix="coda-fleet-beat")
        pending: Future[None] | None = None
        try:
            while not self._stopping.wait(self.lease / 4):
                if pending is None or pending.done():
                    pending = beats.submit(self._beat)
                give_up = self.last_heartbeat + 0.75 * self.lease - time.monotonic()
                try:
                    pending.result(timeout=max(0.0, min(self.lease / 4, give_up)))
                except FuturesTimeout:
                    pass  # still waiting on the database: judged by the silence below
                except LeaseGone:
                    self._lost("the fleet removed it (its lease had expired)")
                    return
                except Exception as exc:  # the database's error, or a bug: said, not fatal
                    log.warning("fleet: heartbeat failed: %s", exc)
                silent = time.monotonic() - self.last_heartbeat
                if silent >= 0.75 * self.lease:
                    why = "no answer" if not pending.done() else "errors"
                    self._lost(f"no heartbeat reached the database for {silent:.0f}s ({why})")
                    return
        finally:
            beats.shutdown(wait=False, cancel_futures=True)

    def _beat(self) -> None:
        """One heartbeat, and the reclaim of the jobs of members whose lease
        ran out (announced on the work channel)."""
        with self.store.pool.connection() as conn, conn.transaction():
            if conn.execute(HEARTBEAT, (self.lease, self.id)).fetchone() is None:
                raise LeaseGone
            freed = [str(row[0]) for row in conn.execute(RECLAIM).fetchall()]
            for queue in freed:
                notify = "SELECT pg_notify(%s, %s)"
                conn.execute(notify, (self.store.channels["work"], queue))
        self.last_heartbeat = time.monotonic()
        if freed:
            self.reclaimed += 1
            log.warning("fleet: reclaimed the jobs of a supervisor whose lease expired")

    def _lost(self, reason: str) -> None:
        events = self._events
        if events is not None:
            self._clock.defer_threadsafe(lambda: events.lease_lost(reason))

    def _listen(self) -> None:
        channels = self.store.channels
        first = True
        while not self._stopping.is_set():
            try:
                with connect(self.store.url, autocommit=True) as conn:
                    for channel in channels.values():
                        conn.execute(f"LISTEN {channel}")  # checked names (schema_...)
                    if not first:
                        self._tell(lambda events: events.reconnected())
                    first = False
                    self._relay(conn, channels)
            except (psycopg.Error, OSError, Exception) as exc:
                if self._stopping.wait(1.0):
                    return
                log.warning("fleet: listener reconnecting: %s", exc)

    def _relay(self, conn: Connection, channels: dict[str, str]) -> None:
        """Pass notifications on; after ``poll`` seconds without one, look for
        work anyway. It waits on the socket in short slices (no query is
        sent) so that ``stop()`` is not held up by a long ``poll``."""
        by_channel = {channel: name for name, channel in channels.items()}
        last = time.monotonic()
        while not self._stopping.is_set():
            wait = min(STOP_CHECK, max(0.0, last + self.poll - time.monotonic()))
            for note in conn.notifies(timeout=wait, stop_after=64):
                last = time.monotonic()
                self._notified(by_channel.get(note.channel), note.payload)
            if time.monotonic() - last >= self.poll:
                last = time.monotonic()
                self._tell(lambda events: events.work_available())

    def _notified(self, name: str | None, payload: str) -> None:
        if name == "work":
            self._tell(lambda events: events.work_available())
        elif name == "done":
            ids = payload.split()
            self._tell(lambda events: events.finished_elsewhere(ids))
        elif name == "cancel":
            job_id, _, terminate = payload.partition(" ")
            self._tell(lambda events: events.cancel_requested(job_id, terminate == "1"))

    def _tell(self, call: Callable[[FleetEvents], None]) -> None:
        events = self._events
        if events is not None:
            self._clock.defer_threadsafe(lambda: call(events))


def _no_jobs() -> list[Job]:
    return []


def _as_bytes(value: object) -> bytes:
    return bytes(cast(bytes, value))
