"""The supervisor's guards on connections, with a hand-driven clock: the
connection limit and the budget of bytes before the handshake (gate.py),
the backoff of wrong tokens (throttle.py), quiet logging (quiet.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from coda.supervisor.gate import ConnectionGate, capacity
from coda.supervisor.quiet import Quieter, QuietLoopErrors
from coda.supervisor.throttle import FREE_FAILURES, MAX_LOCK, TokenThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_one_connection_past_the_limit_is_refused_until_one_leaves() -> None:
    gate = ConnectionGate(max_connections=2)
    assert [gate.admit() for _ in range(3)] == [True, True, False]
    gate.left()
    assert gate.admit()
    assert gate.statistics()["refused_at_limit"] == 1 and gate.open == 2


def test_bytes_held_before_the_handshake_are_counted_across_connections() -> None:
    gate = ConnectionGate(max_connections=10, pre_auth_budget=100)
    first, second = object(), object()
    assert gate.hold(first, 60)
    assert gate.hold(first, 70)  # the same connection holding more: counted once
    assert not gate.hold(second, 40)  # 110 in all
    assert gate.hold(second, 0) and gate.pre_auth_bytes == 70  # closed: released
    assert gate.hold(first, 0) and gate.pre_auth_bytes == 0
    assert gate.over_budget == 1


def test_capacity_leaves_descriptors_for_the_workers_and_the_rest() -> None:
    assert capacity(10_000, descriptor_limit=1_048_576, workers=8) == 10_000
    assert capacity(10_000, descriptor_limit=1024, workers=8) == 1024 - 128 - 4 * 8
    assert capacity(10_000, descriptor_limit=100, workers=8) == 1  # never none


def test_wrong_tokens_are_free_at_first_then_lock_the_address_for_longer_each_time() -> None:
    clock = Clock()
    throttle = TokenThrottle(now=clock)
    for _ in range(FREE_FAILURES):
        throttle.failed("10.0.0.1")
        assert throttle.locked_for("10.0.0.1") == 0
    locks = []
    for _ in range(10):
        throttle.failed("10.0.0.1")
        locks.append(round(throttle.locked_for("10.0.0.1"), 3))
        clock.now += locks[-1]  # guess again as soon as allowed
    assert locks == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, MAX_LOCK, MAX_LOCK, MAX_LOCK]
    assert throttle.locked_for("10.0.0.2") == 0  # per address


def test_a_success_or_a_quiet_minute_clears_an_address() -> None:
    clock = Clock()
    throttle = TokenThrottle(now=clock)
    for _ in range(FREE_FAILURES + 3):
        throttle.failed("a")
        throttle.failed("b")
    throttle.succeeded("a")
    assert throttle.locked_for("a") == 0
    clock.now += 61
    throttle.failed("b")  # counted afresh: among the free ones again
    assert throttle.locked_for("b") == 0


def test_the_addresses_remembered_are_bounded() -> None:
    throttle = TokenThrottle(now=Clock())
    for i in range(5000):
        throttle.failed(f"10.0.{i // 256}.{i % 256}")
    assert throttle.statistics()["addresses"] == 4096


def test_one_record_per_kind_per_interval_then_how_many_were_held_back() -> None:
    clock = Clock()
    quieter = Quieter(interval=10, now=clock)
    assert quieter.let_through("accept") == 0
    assert [quieter.let_through("accept") for _ in range(3)] == [None, None, None]
    assert quieter.let_through("token") == 0  # another kind
    clock.now += 10
    assert quieter.let_through("accept") == 3
    assert Quieter.suffix(3) == " (3 more like it in the last 10s not logged)"


def test_the_loop_handler_quietens_repeated_errors(caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()
    try:
        handler = QuietLoopErrors(Quieter(now=Clock()))
        context: dict[str, Any] = {
            "message": "socket.accept() out of system resource",
            "exception": OSError(24, "Too many open files"),
        }
        for _ in range(1000):
            handler(loop, context)
    finally:
        loop.close()
    assert len([r for r in caplog.records if "out of system resource" in r.getMessage()]) == 1
