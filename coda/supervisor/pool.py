"""The worker processes: start them, watch them, replace the dead ones.

Each worker gets one end of a socket pair as an inherited file descriptor;
it never opens a network connection. A worker that exits is replaced after
a backoff that grows while workers keep dying young (a broken import should
not turn into a fork bomb) and resets once one has lived a while. Its jobs
are requeued by the engine when its connection closes.

Replacing a worker can fail for a while (no descriptor left for its socket
pair, no memory or process slot for the fork): the pool then tries again
after a growing delay, for as long as it runs. A watcher that gave up would
leave its slot empty for good, and a supervisor whose workers all died
meanwhile with none.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["WorkerPool", "WorkerSettings"]

log = logging.getLogger("coda.pool")

MAX_BACKOFF = 10.0
HEALTHY_AFTER = 30.0
RETRY_FIRST = 0.1  # seconds before a failed start is tried again (then doubling)


@dataclass(frozen=True)
class WorkerSettings:
    modules: tuple[str, ...]
    queues: tuple[str, ...]
    task_slots: int
    workflow_slots: int
    extra_args: tuple[str, ...] = ()

    def argv(self, fd: int, worker_id: int) -> list[str]:
        args = [sys.executable, "-m", "coda.worker", "--fd", str(fd), "--worker-id", str(worker_id)]
        args += ["--supervisor-pid", str(os.getpid())]  # the worker exits if orphaned
        for module in self.modules:
            args += ["-A", module]
        for queue in self.queues:
            args += ["--queue", queue]
        args += [
            "--concurrency",
            str(self.task_slots),
            "--workflow-slots",
            str(self.workflow_slots),
        ]
        return args + list(self.extra_args)


@dataclass
class _Slot:
    index: int
    worker_id: int = -1
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    failures: int = 0
    restarts: int = 0


class WorkerPool:
    """``size`` worker processes, each attached through ``attach(sock, id)``."""

    def __init__(
        self,
        size: int,
        settings: WorkerSettings,
        attach: Callable[[socket.socket, int], asyncio.Future[object] | object],
    ) -> None:
        self.size = size
        self.settings = settings
        self._attach = attach
        self._slots = [_Slot(i) for i in range(size)]
        self._ids = itertools.count(1)
        self._stopping = False
        self._watchers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        for slot in self._slots:
            await self._spawn(slot)

    async def _spawn(self, slot: _Slot) -> None:
        """Start the slot's worker and attach it; on failure nothing is left
        behind (no descriptor, no process) and the error is raised."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker_id = next(self._ids)
        process: asyncio.subprocess.Process | None = None
        try:
            try:
                process = await asyncio.create_subprocess_exec(
                    *self.settings.argv(child.fileno(), worker_id),
                    pass_fds=(child.fileno(),),
                    stdin=asyncio.subprocess.DEVNULL,
                )
            finally:
                child.close()
            result = self._attach(parent, worker_id)
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                await result
        except BaseException:
            parent.close()
            if process is not None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
            raise
        slot.worker_id, slot.process, slot.started_at = worker_id, process, time.monotonic()
        watcher = asyncio.create_task(self._watch(slot, process))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, slot: _Slot, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if self._stopping:
            return
        lived = time.monotonic() - slot.started_at
        slot.failures = 0 if lived > HEALTHY_AFTER else slot.failures + 1
        delay = min(MAX_BACKOFF, 0.05 * 2**slot.failures) if slot.failures else 0.0
        log.warning(
            "worker %s (pid %s) exited with %s after %.1fs; restarting in %.2fs",
            slot.worker_id,
            process.pid,
            code,
            lived,
            delay,
        )
        await asyncio.sleep(delay)
        await self._replace(slot)

    async def _replace(self, slot: _Slot) -> None:
        """Start the slot's next worker, trying again while it fails (see
        the module's docstring)."""
        failures = 0
        while not self._stopping:
            try:
                await self._spawn(slot)
            except Exception as exc:  # OSError mostly: EMFILE, ENOMEM, EAGAIN
                failures += 1
                delay = min(MAX_BACKOFF, RETRY_FIRST * 2 ** min(failures - 1, 16))
                log.error(
                    "cannot start a worker in place of worker %s (%s); trying again in %.1fs",
                    slot.worker_id,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            else:
                slot.restarts += 1
                return

    def kill(self, worker_id: int) -> None:
        """SIGKILL one worker (it hung past a timeout); it will be replaced."""
        for slot in self._slots:
            if slot.worker_id == worker_id and slot.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGKILL)

    def pids(self) -> list[int]:
        return [s.process.pid for s in self._slots if s.process is not None]

    @property
    def restarts(self) -> int:
        return sum(slot.restarts for slot in self._slots)

    async def stop(self, grace: float = 5.0) -> None:
        self._stopping = True
        processes = [s.process for s in self._slots if s.process and s.process.returncode is None]
        for process in processes:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in processes)), grace)
        except TimeoutError:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in processes))
        for watcher in list(self._watchers):
            watcher.cancel()
