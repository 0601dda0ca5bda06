"""Descriptors and connections an adversary can make the supervisor hold:
peers that never say hello, more peers than it can hold, partial hellos
that fill its memory, a full descriptor table while a worker dies, and a
token guesser."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

import coda
from coda.errors import HandshakeError
from coda.messages import PROTOCOL_VERSION, Error, Hello
from coda.protocol import encode_message
from coda.testing import SupervisorProcess, wait_until
from tests.e2e.rawpeer import connect, read_messages, rss_bytes
from tests.e2e.test_cli import coda_cli
from tests.e2e.test_without_uvloop import without_uvloop

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024


def refusal(sock: socket.socket) -> Error:
    """The one message a refused peer gets before the supervisor closes."""
    sock.settimeout(30)
    (message,) = read_messages(sock)
    assert isinstance(message, Error), message
    assert sock.recv(1) == b""  # and then the end
    return message


def test_a_peer_that_never_says_hello_is_closed_after_the_handshake_timeout() -> None:
    with SupervisorProcess(workers=0, extra_args=["--handshake-timeout", "1"]) as sup:
        silent = connect(sup.address, hello=False)
        started = time.monotonic()
        error = refusal(silent)
        assert 0.9 < time.monotonic() - started < 15
        assert error.code == "handshake_timeout"
        assert error.message == "no hello within 1s of connecting (--handshake-timeout)"
        assert sup.status()["supervisor"]["connections"]["handshake_timeouts"] == 1


def test_a_client_past_the_connection_limit_is_told_so_in_one_line() -> None:
    with SupervisorProcess(workers=0, extra_args=["--max-connections", "3"]) as sup:
        idle = [connect(sup.address, hello=False) for _ in range(3)]
        expected = (
            f"the supervisor at {sup.address} refused the connection: it already holds 3 client "
            "connections, its limit (--max-connections): try again later"
        )
        with pytest.raises(HandshakeError) as refused:
            coda.Client(sup.address).status()
        assert str(refused.value) == expected
        done = coda_cli("status", "--supervisor", sup.address)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines() == [f"Error: {expected}"]
        idle.pop().close()
        statistics = wait_until(lambda: connections_once_admitted(sup), timeout=10)
        assert statistics["refused_at_limit"] >= 2 and statistics["limit"] == 3
        for sock in idle:
            sock.close()


def connections_once_admitted(sup: SupervisorProcess) -> dict[str, int] | None:
    try:
        return sup.status()["supervisor"]["connections"]  # type: ignore[no-any-return]
    except HandshakeError:  # the closed one not yet gone: still at the limit
        return None


def test_bytes_held_for_partial_hellos_are_bounded() -> None:
    """Each peer sends most of a hello frame as large as the handshake
    allows, and never the rest: 900 of them would hold 54 MB."""
    partial = struct.pack(">I", 65535) + bytes(60_000)
    with SupervisorProcess(workers=0) as sup:
        baseline = rss_bytes(sup.pid)
        peers = []
        for _ in range(900):
            peer = connect(sup.address, hello=False)
            peers.append(peer)
            with contextlib.suppress(OSError):  # closed already: over the budget
                peer.sendall(partial)
        peak = [0]

        def all_read() -> bool:
            """Every byte sent has been read: all but the budget's worth of
            peers were closed for it (the peak RSS is sampled meanwhile)."""
            peak[0] = max(peak[0], rss_bytes(sup.pid) - baseline)
            connections = sup.status()["supervisor"]["connections"]
            return bool(connections["closed_over_pre_auth_budget"] >= 800)

        wait_until(all_read, timeout=60, interval=0.05, what="the partial hellos read")
        grown = max(peak[0], rss_bytes(sup.pid) - baseline)
        assert grown < 24 * MiB, f"the supervisor grew by {grown // MiB} MiB"
        assert sup.status()["supervisor"]["connections"]["pre_auth_bytes"] <= 4 * MiB
        for peer in peers:
            peer.close()


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def grows_by(path: Path, seconds: float) -> int:
    before = path.stat().st_size
    time.sleep(seconds)  # a rate over a fixed time: what is measured is the time
    return path.stat().st_size - before


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_out_of_descriptors_a_dead_worker_is_replaced_and_the_log_stays_quiet(
    loop: str, tmp_path: Path
) -> None:
    log_path = tmp_path / "supervisor.log"
    if loop == "uvloop":
        import uvloop  # noqa: F401  (the test extra installs it: this case must not run asyncio)
    env = without_uvloop(tmp_path) if loop == "asyncio" else None
    with (
        log_path.open("wb") as log,
        SupervisorProcess(["tests.apps.basic"], workers=2, stderr=log, env=env) as sup,
    ):
        wait_until(lambda: len(sup.status()["workers"]) == 2, what="both workers")
        victim = sup.worker_pids()[0]
        ceiling = open_descriptors(sup.pid) + 10
        _, hard = resource.prlimit(sup.pid, resource.RLIMIT_NOFILE)
        resource.prlimit(sup.pid, resource.RLIMIT_NOFILE, (ceiling, hard))
        host, port = sup.address.rsplit(":", 1)
        crowd = [socket.create_connection((host, int(port)), timeout=10) for _ in range(40)]
        wait_until(lambda: open_descriptors(sup.pid) >= ceiling - 1, what="descriptors taken")
        os.kill(victim, signal.SIGKILL)
        wait_until(
            lambda: b"exited with -9" in log_path.read_bytes(),
            timeout=30,
            what="the pool to see its worker die",
        )
        logged = grows_by(log_path, 3.0)  # meanwhile the pool tries to replace it, and fails
        assert logged < 16 * 1024, f"{logged} bytes of log in 3s"
        for sock in crowd:
            sock.close()
        wait_until(
            lambda: len(sup.status()["workers"]) == 2 and victim not in sup.worker_pids(),
            timeout=30,
            what="the dead worker replaced once descriptors were free",
        )
        assert sup.client().run("tests.apps.basic.add", args={"x": 1, "y": 2}, timeout=30) == 3


def soft_descriptor_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"no descriptor limit for {pid}")


def test_the_soft_descriptor_limit_is_raised_to_the_hard_one() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(512, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        sup = SupervisorProcess(workers=0)  # inherits the lowered limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with sup:
        assert soft_descriptor_limit(sup.pid) == hard
        assert sup.status()["supervisor"]["connections"]["limit"] == min(10_000, hard - 128)


def guess(address: str, token: str) -> str:
    """One handshake with ``token``: the code of the refusal, or "welcome"."""
    sock = connect(address, hello=False)
    try:
        sock.sendall(encode_message(Hello(version=PROTOCOL_VERSION, role="client", token=token)))
        (answer,) = read_messages(sock)
        return answer.code if isinstance(answer, Error) else "welcome"
    finally:
        sock.close()


def test_wrong_tokens_from_one_address_are_slowed_down() -> None:
    token = "tok-5e1f"
    with SupervisorProcess(workers=0, extra_args=["--token", token]) as sup:
        heard: list[list[str]] = [[] for _ in range(4)]
        deadline = time.monotonic() + 3

        def guesser(answers: list[str]) -> None:
            while time.monotonic() < deadline:
                answers.append(guess(sup.address, "tok-0000"))

        guessers = [threading.Thread(target=guesser, args=(answers,)) for answers in heard]
        for thread in guessers:
            thread.start()
        for thread in guessers:
            thread.join()
        answers = Counter(answer for answers in heard for answer in answers)
        # 5 free, then locked for 0.1, 0.2, 0.4, 0.8, 1.6 s...: 10 compared in 3 s at most
        assert answers["token_invalid"] <= 10, answers
        assert answers["token_throttled"] > answers["token_invalid"], answers
        assert set(answers) == {"token_invalid", "token_throttled"}
        guess(sup.address, "tok-0000")  # one more: the address is locked now, for seconds
        with pytest.raises(HandshakeError, match=r"too many wrong tokens from 127\.0\.0\.1"):
            coda.Client(sup.address, token=token).status()  # not even the right one
        wait_until(lambda: guess(sup.address, token) == "welcome", timeout=15, interval=0.5)
        status = sup.client(token=token).status()
        assert status["supervisor"]["wrong_tokens"]["refused_unchecked"] > 0
