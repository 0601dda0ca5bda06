"""Print the fault harness's figures at the end of the run, pass or fail
(they travel from xdist workers to the controller as user properties)."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    figures = [
        str(value)
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        for name, value in getattr(report, "user_properties", [])
        if name == "fault_report"
    ]
    if figures:
        terminalreporter.section("fault harness figures")
        for block in figures:
            terminalreporter.write_line(block)
