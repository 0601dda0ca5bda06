"""Workers do not outlive their supervisor (issue 11.7), with real processes.

A sync task that sleeps and then writes a file runs on a worker; then the
supervisor goes away. The worker must be gone well before the task would
have finished, and the file must never appear: the negative check waits
past the time the task would have written it.

Besides the whole story (SIGKILL to the supervisor's pid alone, as the OOM
killer does), each guard is checked on its own with a hand-played
supervisor: the closed socket (the parent lives), the parent's death (the
socket stays open), and a parent that died before the worker could ask to
die with it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coda._outcome import encode_value
from coda.messages import PROTOCOL_VERSION, Hello, Message, RunTask, Started, Welcome
from coda.protocol import FrameDecoder, decode_message, encode_message
from coda.testing import SupervisorProcess, wait_until
from coda.worker.orphan import ORPHANED_EXIT_CODE
from tests.apps import slow

pytestmark = pytest.mark.e2e

TASK_SECONDS = 5.0  # how long the task works before writing its file
GONE_WITHIN = 3.0  # the worker must be gone this soon after its supervisor


def running(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def assert_task_abandoned(result: Path) -> None:
    """Called once the worker is gone: the task ran in that process, which
    alone could write ``result``, so nothing can write it later; it was
    abandoned mid-way (its body takes ``TASK_SECONDS``) if it is not there."""
    assert not result.exists()


def wait_task_started(result: Path) -> int:
    """The pid of the worker running the task, once it has started."""
    marker = Path(f"{result}.started")
    return int(wait_until(lambda: marker.exists() and marker.read_text(), what="the task's start"))


def test_workers_stop_when_only_the_supervisor_is_killed(tmp_path: Path) -> None:
    result = tmp_path / "result"
    with SupervisorProcess(["tests.apps.slow"], workers=2) as sup:
        wait_until(lambda: len(sup.worker_pids()) == 2, what="both workers")
        workers = sup.worker_pids()
        sup.client().submit(
            slow.sleep_then_write, args={"path": str(result), "seconds": TASK_SECONDS}
        )
        busy = wait_task_started(result)
        assert busy in workers

        os.kill(sup.pid, signal.SIGKILL)  # the supervisor alone, not its process group
        sup.process.wait()
        wait_until(
            lambda: not any(running(pid) for pid in workers),
            timeout=GONE_WITHIN,
            what="the orphaned workers to exit",
        )
        assert_task_abandoned(result)


class PlayedSupervisor:
    """The supervisor's end of a worker's socket pair, played by the test."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.settimeout(30)
        self._decoder = FrameDecoder()
        self._received: list[Message] = []

    def receive(self) -> Message:
        while not self._received:
            data = self.sock.recv(65536)
            assert data, "the worker closed the connection"
            self._received += [decode_message(frame) for frame in self._decoder.feed(data)]
        return self._received.pop(0)

    def start_task(self, result: Path) -> None:
        """Welcome the worker, hand it the slow task and wait for its Started."""
        assert isinstance(self.receive(), Hello)
        args = encode_value({"path": str(result), "seconds": TASK_SECONDS}, "msgpack")
        self.sock.sendall(
            encode_message(Welcome(version=PROTOCOL_VERSION, supervisor_id="played"))
            + encode_message(
                RunTask(job_id="job-1", name=slow.sleep_then_write.name, args=args, attempt=1)
            )
        )
        assert self.receive() == Started(job_id="job-1")


def worker_argv(fd: int, supervisor_pid: int | str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "coda.worker",
        "--fd",
        str(fd),
        "--worker-id",
        "1",
        "-A",
        "tests.apps.slow",
        "--supervisor-pid",
        str(supervisor_pid),
    ]


@pytest.fixture
def socket_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_worker_whose_socket_closes_exits_at_once_abandoning_its_task(
    tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    """The parent (this test) stays alive, so only the socket tells the worker."""
    ours, theirs = socket_pair
    result = tmp_path / "result"
    worker = subprocess.Popen(
        worker_argv(theirs.fileno(), os.getpid()), pass_fds=(theirs.fileno(),)
    )
    try:
        theirs.close()
        PlayedSupervisor(ours).start_task(result)
        wait_task_started(result)
        ours.close()
        assert worker.wait(timeout=GONE_WITHIN) == ORPHANED_EXIT_CODE
        assert_task_abandoned(result)
    finally:
        worker.kill()
        worker.wait()


def test_a_worker_dies_with_its_parent_even_while_its_socket_stays_open(
    tmp_path: Path, socket_pair: tuple[socket.socket, socket.socket]
) -> None:
    """A stand-in parent starts the worker; this test holds the socket's
    other end, so only the parent's death can tell the worker."""
    ours, theirs = socket_pair
    result = tmp_path / "result"
    spawn_and_wait = (
        "import os, signal, subprocess, sys\n"
        "fd = int(sys.argv[1])\n"
        "argv = [a.replace('PARENT', str(os.getpid())) for a in sys.argv[2:]]\n"
        "worker = subprocess.Popen(argv, pass_fds=(fd,))\n"
        "print(worker.pid, flush=True)\n"
        "signal.pause()\n"
    )
    fd = theirs.fileno()
    parent = subprocess.Popen(
        [sys.executable, "-c", spawn_and_wait, str(fd), *worker_argv(fd, "PARENT")],
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    try:
        theirs.close()
        PlayedSupervisor(ours).start_task(result)
        wait_task_started(result)
        parent.kill()
        parent.wait()
        wait_until(lambda: not running(worker_pid), timeout=GONE_WITHIN, what="the worker's end")
        assert_task_abandoned(result)
    finally:
        parent.kill()
        parent.wait()
        if running(worker_pid):
            os.kill(worker_pid, signal.SIGKILL)


def test_a_worker_whose_supervisor_died_before_it_started_exits_at_once(
    socket_pair: tuple[socket.socket, socket.socket],
) -> None:
    """``--supervisor-pid`` names a process that is not the worker's parent
    (any more): the worker exits before it says hello."""
    ours, theirs = socket_pair
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    worker = subprocess.Popen(worker_argv(theirs.fileno(), gone.pid), pass_fds=(theirs.fileno(),))
    theirs.close()
    try:
        assert worker.wait(timeout=30) == ORPHANED_EXIT_CODE
        ours.settimeout(5)
        assert ours.recv(65536) == b""  # closed without a Hello
    finally:
        worker.kill()
        worker.wait()
