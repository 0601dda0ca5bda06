"""The commands an operator reaches for: ``result``, ``runs``, ``show``,
``cancel`` and ``purge``.

Each is one request to the supervisor (``result --wait`` then waits). Bad
input gets one line and a non-zero status, and nothing changes: the
supervisor checks run ids, states and filters and says what is wrong
(``coda.supervisor.queries``); the command checks only what never reaches
it (a ``--since`` it cannot read). Exit statuses: 0 done, 1 refused or the
run failed, 2 a usage error, ``EXIT_NOT_FINISHED`` (3) a run that has not
finished yet, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import click

from ._cli_connect import SupervisorTarget, client_options, refused
from ._cli_run import wait_with_progress
from ._cli_views import format_runs, format_show, job_dict, parse_since
from .errors import Cancelled, CodaError, RemoteError, ResultTimeoutError
from .supervisor.jobs import JobState
from .supervisor.queries import MAX_RUNS

__all__ = ["EXIT_NOT_FINISHED", "cancel", "purge", "result", "runs", "show"]

EXIT_NOT_FINISHED = 3
FINISHED = tuple(state.value for state in JobState if state.finished)
RUN_STATES = [state.value for state in JobState]


@click.command()
@click.argument("run_id")
@click.option("--wait", is_flag=True, help="Wait for the run to finish.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Wait at most this many seconds (implies --wait; the run goes on).",
)
@client_options
def result(run_id: str, wait: bool, timeout: float | None, supervisor: SupervisorTarget) -> None:
    """Print a run's result as JSON.

    Without --wait, a run that has not finished yet exits with status 3."""
    try:
        with supervisor.client() as client:
            run, _ = client.show(run_id)
            if run.state not in FINISHED and not (wait or timeout is not None):
                click.echo(
                    f"run {run_id} has not finished (it is {run.state}); wait for it with: "
                    f"coda result {run_id} --wait",
                    err=True,
                )
                sys.exit(EXIT_NOT_FINISHED)
            handle = client.handle(run_id)
            if run.state in FINISHED:
                value = handle.result()
            else:
                value = wait_with_progress(handle, timeout, announce="has not finished; waiting")
    except KeyboardInterrupt:
        click.echo(f"interrupted: run {run_id} goes on in the supervisor", err=True)
        sys.exit(130)
    except ResultTimeoutError:
        click.echo(
            f"run {run_id} did not finish within {timeout}s; it goes on. "
            f"Wait again with: coda result {run_id} --wait",
            err=True,
        )
        sys.exit(EXIT_NOT_FINISHED)
    except Cancelled:
        raise click.ClickException(f"run {run_id} was cancelled") from None
    except RemoteError as exc:
        if exc.remote_traceback:
            click.echo(exc.remote_traceback.rstrip(), err=True)
        raise click.ClickException(f"run failed: {exc}") from None
    except CodaError as exc:
        raise refused(exc) from None
    click.echo(json.dumps(value, default=str))


def _since(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_since(value, time.time())
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


@click.command()
@click.option(
    "--state",
    type=click.Choice(RUN_STATES),
    help="Only runs in this state.",
)
@click.option("--name", help="Only runs of this task or workflow (its registered name).")
@click.option(
    "--since",
    metavar="WHEN",
    help="Only runs created since then: a date or time (2026-11-29, 2026-11-29T06:55) "
    "or a duration back from now (30s, 10m, 2h, 1d).",
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_RUNS),
    default=50,
    show_default=True,
    help="At most this many runs, newest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the runs as JSON.")
@client_options
def runs(
    state: str | None,
    name: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    supervisor: SupervisorTarget,
) -> None:
    """List recent runs, newest first."""
    since_epoch = _since(since)
    try:
        with supervisor.client() as client:
            found = client.runs(state=state, name=name, since=since_epoch, limit=limit)
    except CodaError as exc:
        raise refused(exc) from None
    if as_json:
        click.echo(json.dumps([job_dict(run) for run in found], indent=2, default=str))
    else:
        click.echo(format_runs(found))


@click.command()
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True, help="Print the run and its steps as JSON.")
@client_options
def show(run_id: str, as_json: bool, supervisor: SupervisorTarget) -> None:
    """Show a run and its steps.

    For each step: its cache key, attempts, start and duration, whether it
    ran or was answered from the cache, and its error and traceback."""
    try:
        with supervisor.client() as client:
            run, steps = client.show(run_id)
    except CodaError as exc:
        raise refused(exc) from None
    if as_json:
        data: dict[str, Any] = {"run": job_dict(run), "steps": [job_dict(s, run) for s in steps]}
        click.echo(json.dumps(data, indent=2, default=str))
    else:
        click.echo(format_show(run, steps))


@click.command()
@click.argument("run_id")
@click.option(
    "--terminate",
    is_flag=True,
    help="Also stop a sync task that is running, by replacing its worker process.",
)
@client_options
def cancel(run_id: str, terminate: bool, supervisor: SupervisorTarget) -> None:
    """Cancel a run and everything it spawned.

    A cancelled run is never rerun; its result() raises coda.Cancelled."""
    try:
        with supervisor.client() as client:
            state = client.cancel(run_id, terminate=terminate)
    except CodaError as exc:
        raise refused(exc) from None
    if state == "cancelled":
        click.echo(f"run {run_id} cancelled")
    else:
        click.echo(
            f"run {run_id} is being cancelled: its worker is stopping it "
            f"(coda result {run_id} --wait waits for the end)"
        )


@click.command()
@click.argument("queue")
@click.option("-f", "--force", is_flag=True, help="Do not ask for confirmation.")
@client_options
def purge(queue: str, force: bool, supervisor: SupervisorTarget) -> None:
    """Drop the jobs waiting in a queue.

    Jobs running or held back for a retry stay; each dropped job ends cancelled."""
    if not force:
        click.confirm(
            f"Drop every job waiting in queue {queue!r}? They end cancelled; "
            "there is no undo (-f skips this question)",
            abort=True,
        )
    try:
        with supervisor.client() as client:
            purged = client.purge(queue)
    except CodaError as exc:
        raise refused(exc) from None
    if purged:
        click.echo(f"purged {purged} job{'s' if purged != 1 else ''} from queue {queue!r}")
    else:
        click.echo(f"no job was waiting in queue {queue!r}")
