"""The ``coda`` command: ``supervisor``, ``run`` and ``status`` here; the
operator's ``result``, ``runs``, ``show``, ``cancel`` and ``purge`` in
``_cli_steer``."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from typing import Any

import click

from . import _cli_steer
from ._cli_connect import SupervisorTarget, client_options, refused
from ._cli_run import Resume, wait_with_progress
from ._cli_status import format_status
from ._cli_tls import tls_server_options
from .errors import CodaError, ConnectionLostError, RemoteError, ResultTimeoutError
from .supervisor import SupervisorConfig
from .supervisor.config import MAX_FRAME_LIMIT, MIN_FRAME_LIMIT

__all__ = ["main"]


@click.group()
@click.version_option(package_name="coda-workflows")
def main() -> None:
    """Coda: durable workflows and tasks, run by a supervisor and its workers."""


def _default(name: str) -> Any:
    """``SupervisorConfig``'s default for the option ``name`` (a value, or a
    callable click calls): the one source of the supervisor's defaults."""
    field = SupervisorConfig.__dataclass_fields__[name]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory
    return field.default


def _split_queues(values: tuple[str, ...]) -> tuple[str, ...]:
    queues = tuple(q.strip() for value in values for q in value.split(",") if q.strip())
    return queues or _default("queues")


@main.command()
@click.option(
    "-A",
    "--app",
    "modules",
    multiple=True,
    metavar="MODULE",
    help="Module defining tasks and workflows (repeatable).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=0),
    default=_default("workers"),
    show_default="the number of CPUs",
    help="Worker processes to run (0: no workers).",
)
@click.option(
    "--listen",
    default=_default("listen"),
    show_default=True,
    help="TCP address for clients; 'none' to disable TCP.",
)
@click.option("--unix", "unix_socket", metavar="PATH", help="Also listen on this Unix socket.")
@click.option(
    "--http",
    metavar="HOST:PORT",
    help="Serve the dashboard (runs, steps, queues, workers, schedules) on this address: "
    "loopback, or any other with --token.",
)
@click.option(
    "--queues",
    multiple=True,
    metavar="Q1,Q2",
    help=f"Queues this supervisor's workers consume. Default: {','.join(_default('queues'))}.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=_default("concurrency"),
    show_default=True,
    help="Tasks each worker runs at once.",
)
@click.option(
    "--prefetch",
    type=click.IntRange(min=0),
    default=None,
    help="Tasks sent to each worker beyond its free slots, so it never waits for the next "
    "one; it starts them in order as slots free up. 0 sends only to free slots. "
    "Default: 4 x --concurrency (Celery's default prefetch multiplier).",
)
@click.option(
    "--workflow-slots",
    type=click.IntRange(min=1),
    default=_default("workflow_slots"),
    show_default=True,
    help="Workflows each worker drives at once.",
)
@click.option(
    "--token",
    envvar="CODA_TOKEN",
    help="Shared secret clients must present. Required to listen on a non-loopback address.",
)
@tls_server_options
@click.option(
    "--accept-pickle",
    is_flag=True,
    help="Accept pickle payloads (runs code from whoever can connect: trusted setups only).",
)
@click.option(
    "--frame-limit",
    type=click.IntRange(min=MIN_FRAME_LIMIT, max=MAX_FRAME_LIMIT),
    default=_default("frame_limit"),
    show_default=True,
    metavar="BYTES",
    help="The largest argument or result, in bytes once encoded, and so the largest message. "
    "Clients and workers learn it from the supervisor and refuse larger values themselves.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=_default("max_connections"),
    show_default=True,
    help="Client connections held at once; one more is refused with a message saying so. "
    "Lowered to fit the descriptor limit (ulimit -n) if that is too small.",
)
@click.option(
    "--handshake-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=_default("handshake_timeout"),
    show_default=True,
    help="Seconds a new connection has to say hello before it is closed.",
)
@click.option(
    "--result-ttl",
    type=click.FloatRange(min=1),
    default=_default("result_ttl"),
    show_default=True,
    help="Seconds to keep finished runs and results.",
)
@click.option(
    "--store",
    envvar="CODA_STORE",
    default=_default("store"),
    show_default="state.sqlite3 in $XDG_STATE_HOME/coda, else ~/.local/state/coda",
    help=(
        "Where state is kept: sqlite:///relative/file.sqlite3 or sqlite:////absolute/file.sqlite3 "
        "(durable across restarts), or memory:// (lost when the supervisor exits). "
        "Env: CODA_STORE."
    ),
)
@click.option(
    "--fleet-lease",
    type=click.FloatRange(min=1),
    default=_default("fleet_lease"),
    show_default=True,
    help="With a postgresql:// store: seconds without this supervisor's heartbeat after which "
    "the others take over its jobs. It stops itself after three quarters of that.",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=_default("shutdown_grace"),
    show_default=True,
    help="On SIGTERM/SIGINT, seconds to let running tasks finish before stopping "
    "(a second signal stops at once; unfinished work stays in the store).",
)
@click.option(
    "--celery-app",
    metavar="MODULE:ATTR",
    help="Adopt every task of this Celery app (e.g. proj.celery:app) as a Coda task.",
)
@click.option(
    "--celery-divert",
    multiple=True,
    metavar="RULES",
    help="Celery messages published to coda:// that Coda workers run instead of Celery "
    "workers: '*', 'queue:NAME' or task names, comma-separated (needs --celery-app).",
)
@click.option(
    "--celery-beat",
    is_flag=True,
    help="Run the Celery app's beat_schedule from this supervisor, each tick once, "
    "instead of from celery beat (stop celery beat: both would run every entry).",
)
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
def supervisor(
    modules: tuple[str, ...],
    workers: int,
    listen: str,
    unix_socket: str | None,
    http: str | None,
    queues: tuple[str, ...],
    concurrency: int,
    prefetch: int | None,
    workflow_slots: int,
    token: str | None,
    tls_cert: str | None,
    tls_key: str | None,
    tls_ca: str | None,
    accept_pickle: bool,
    frame_limit: int,
    max_connections: int,
    handshake_timeout: float,
    result_ttl: float,
    store: str,
    shutdown_grace: float,
    fleet_lease: float,
    celery_app: str | None,
    celery_divert: tuple[str, ...],
    celery_beat: bool,
    log_level: str,
) -> None:
    """Run a supervisor and its worker processes until SIGINT/SIGTERM."""
    from .supervisor import Supervisor

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s supervisor %(levelname)s %(name)s: %(message)s"
    )
    os.environ.setdefault("CODA_LOG_LEVEL", log_level.upper())
    sys.path.insert(0, os.getcwd())
    config = SupervisorConfig(
        modules=modules,
        workers=workers,
        listen=None if listen.lower() == "none" else listen,
        unix_socket=unix_socket,
        http=http,
        queues=_split_queues(queues),
        concurrency=concurrency,
        prefetch=prefetch,
        workflow_slots=workflow_slots,
        token=token,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_ca=tls_ca,
        accept_pickle=accept_pickle,
        frame_limit=frame_limit,
        max_connections=max_connections,
        handshake_timeout=handshake_timeout,
        result_ttl=result_ttl,
        store=store,
        shutdown_grace=shutdown_grace,
        fleet_lease=fleet_lease,
        celery_app=celery_app,
        celery_divert=celery_divert,
        celery_beat=celery_beat,
    )
    try:
        Supervisor(config).run()
    except CodaError as exc:
        raise click.ClickException(str(exc)) from exc


def _parse_args(value: str) -> dict[str, Any]:
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}") from exc
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object of keyword arguments, e.g. '{\"x\": 1}'")
    return parsed


@main.command()
@click.argument("name")
@click.option(
    "--args",
    "args_json",
    default="{}",
    show_default=True,
    help="Keyword arguments as a JSON object.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Give up waiting after this many seconds (the run goes on).",
)
@click.option("--no-wait", is_flag=True, help="Print the run id and return at once.")
@click.option(
    "--run-id",
    metavar="ID",
    help="Submit under this run id. If a run with this id exists (not yet expired), "
    "wait for it instead of starting another: how to get back to a run.",
)
@client_options
def run(
    name: str,
    args_json: str,
    timeout: float | None,
    no_wait: bool,
    run_id: str | None,
    supervisor: SupervisorTarget,
) -> None:
    """Run the task or workflow registered as NAME; print its result as JSON."""
    try:
        args = _parse_args(args_json)
    except click.BadParameter as exc:
        raise click.BadParameter(str(exc), param_hint="--args") from None
    resume: Resume | None = None
    try:
        with supervisor.client() as client:
            handle = client.submit(name, args, run_id=run_id)
            if no_wait:
                click.echo(handle.run_id)
                return
            resume = Resume(name, args_json, supervisor.address, handle.run_id)
            result = wait_with_progress(handle, timeout)
    except KeyboardInterrupt:
        if resume is None:  # not accepted yet: nothing goes on
            raise
        click.echo(resume.interrupted(), err=True)
        sys.exit(130)  # the shell's code for "stopped by SIGINT"
    except RemoteError as exc:
        if exc.remote_traceback:
            click.echo(exc.remote_traceback.rstrip(), err=True)
        raise click.ClickException(f"run failed: {exc}") from None
    except (ConnectionLostError, ResultTimeoutError) as exc:
        raise click.ClickException(resume.ended(exc) if resume else str(exc)) from None
    except CodaError as exc:
        raise refused(exc) from None
    click.echo(json.dumps(result, default=str))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw status as JSON.")
@client_options
def status(as_json: bool, supervisor: SupervisorTarget) -> None:
    """Show the supervisor's state.

    Workers, queues, runs in flight, schedules, the coda:// broker's queues
    and the counts per task and workflow name."""
    try:
        with supervisor.client() as client:
            data = client.status()
    except CodaError as exc:
        raise refused(exc) from None
    if as_json:
        click.echo(json.dumps(data, indent=2, default=str))
        return
    click.echo(format_status(data))


for _command in (
    _cli_steer.result,
    _cli_steer.runs,
    _cli_steer.show,
    _cli_steer.cancel,
    _cli_steer.purge,
):
    main.add_command(_command)
