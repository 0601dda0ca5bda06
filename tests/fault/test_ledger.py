"""The harness's counting, on hand-written logs: it must see what it claims to."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fault.ledger import Ledger, read_ledger

CLEAN = """\
body r1 b1 10 1
start r1 s0 11 e1
done r1 s0 11 e1
seen r1 s0 e1 b1
end r1 b1
"""


def ledger_of(tmp_path: Path, text: str) -> Ledger:
    path = tmp_path / "executions.log"
    path.write_text(text)
    return read_ledger(path)


def test_a_clean_run(tmp_path: Path) -> None:
    ledger = ledger_of(tmp_path, CLEAN)
    ledger.add_results({"r1": {"s0": "e1"}})
    assert (ledger.step_executions, ledger.raw_reexecutions, ledger.recorded_twice) == (1, 0, 0)
    assert (ledger.interrupted, ledger.unexplained_results, ledger.completion_reruns) == (0, 0, 0)


def test_a_step_finished_twice_but_recorded_once_is_a_raw_reexecution(tmp_path: Path) -> None:
    ledger = ledger_of(
        tmp_path,
        CLEAN + "start r1 s0 12 e2\ndone r1 s0 12 e2\nbody r1 b2 13 1\nseen r1 s0 e2 b2\n",
    )
    assert ledger.raw_reexecutions == 1 and ledger.keys_reexecuted == 1
    assert ledger.recorded_twice == 1  # ...unless b2 was handed the first result:
    ledger = ledger_of(
        tmp_path, CLEAN + "start r1 s0 12 e2\ndone r1 s0 12 e2\nseen r1 s0 e1 b2\nend r1 b2\n"
    )
    assert (ledger.raw_reexecutions, ledger.recorded_twice, ledger.completion_reruns) == (1, 0, 1)


def test_a_client_given_another_result_is_a_double_record(tmp_path: Path) -> None:
    ledger = ledger_of(tmp_path, CLEAN + "start r1 s0 12 e2\ndone r1 s0 12 e2\n")
    ledger.add_results({"r1": {"s0": "e2"}})
    assert ledger.recorded_twice == 1


def test_interrupted_and_unexplained(tmp_path: Path) -> None:
    ledger = ledger_of(tmp_path, CLEAN + "start r1 s1 11 e3\nseen r1 s2 e9 b1\n")
    assert ledger.interrupted == 1 and ledger.unexplained_results == 1


def test_a_torn_line_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="malformed"):
        ledger_of(tmp_path, CLEAN + "done r1 s0\n")
