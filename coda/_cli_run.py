"""``coda run`` while it waits, and what it says when the wait ends early.

A run belongs to the supervisor, not to the command that submitted it: when
the wait stops (Ctrl-C, ``--timeout``, the supervisor going away) the run
goes on, and the person needs its id and the command that waits for it
again. ``coda run NAME --run-id ID`` is that command: a submission with an
existing run id attaches to the run instead of starting another.
"""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from typing import Any

import click

from ._client_common import DEFAULT_ADDRESS
from .client import RunHandle
from .errors import CodaError, ResultTimeoutError

__all__ = ["Resume", "wait_with_progress"]


def wait_with_progress(
    handle: RunHandle, timeout: float | None, announce: str = "accepted; waiting for its result"
) -> Any:
    """Wait in short slices so a long wait shows it is alive (on stderr).

    The run id is on stderr from the start (``run ID`` and ``announce``): a
    log of a script that was stopped while waiting still says which run to
    look for. On a terminal the progress line is erased when the wait ends,
    however it ends."""
    if not sys.stderr.isatty():
        click.echo(f"run {handle.run_id} {announce}", err=True)
        return _wait(handle, timeout, interactive=False)
    click.echo(f"waiting for run {handle.run_id}…", nl=False, err=True)
    try:
        return _wait(handle, timeout, interactive=True)
    finally:
        click.echo("\r\033[K", nl=False, err=True)


def _wait(handle: RunHandle, timeout: float | None, *, interactive: bool) -> Any:
    started = time.monotonic()
    next_report = 5.0
    while True:
        elapsed = time.monotonic() - started
        if timeout is not None and elapsed >= timeout:
            raise ResultTimeoutError(f"run {handle.run_id} did not finish within {timeout}s")
        slice_ = 1.0 if timeout is None else min(1.0, timeout - elapsed)
        try:
            return handle.result(timeout=slice_)
        except ResultTimeoutError:
            elapsed = time.monotonic() - started
            if interactive:
                click.echo(f"\rwaiting for run {handle.run_id}… {elapsed:.0f}s", nl=False, err=True)
            elif elapsed >= next_report:
                click.echo(f"still waiting for run {handle.run_id} ({elapsed:.0f}s)", err=True)
                next_report *= 2


@dataclass(frozen=True)
class Resume:
    """How to get back to a run whose wait ended early."""

    name: str
    args_json: str
    address: str
    run_id: str

    def command(self) -> str:
        argv = ["coda", "run", self.name]
        if self.args_json.strip() != "{}":
            argv += ["--args", self.args_json]
        argv += ["--run-id", self.run_id]
        if self.address != DEFAULT_ADDRESS:
            argv += ["--supervisor", self.address]
        return shlex.join(argv)

    def interrupted(self) -> str:
        return (
            f"interrupted: run {self.run_id} goes on in the supervisor at {self.address}.\n"
            f"Wait for its result again with: {self.command()}\n"
            f"or from Python: coda.Client({self.address!r}).handle({self.run_id!r}).result()"
        )

    def ended(self, exc: CodaError) -> str:
        """The message for a wait ended by a timeout or a lost supervisor."""
        if isinstance(exc, ResultTimeoutError):
            return (
                f"{exc}; it goes on in the supervisor. "
                f"Wait for its result again with: {self.command()}"
            )
        return (
            f"{exc} while waiting for run {self.run_id}. The run was accepted: on a durable "
            "store (the default) it resumes when a supervisor starts on that store again. "
            f"Then wait for its result with: {self.command()}"
        )
