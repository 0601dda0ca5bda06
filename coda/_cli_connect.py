"""How a ``coda`` client command reaches the supervisor, and says it could not.

``client_options`` gives a command ``--supervisor``, ``--token`` and the TLS
options at once and hands it one ``SupervisorTarget``; ``refused`` turns a
``CodaError`` into the one line click prints (a refusal from the supervisor
without its error code: the sentence already says what was wrong).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from ssl import SSLContext
from typing import Any

import click

from ._cli_tls import tls_client_options
from ._client_common import DEFAULT_ADDRESS
from .client import Client
from .errors import CodaError, RequestRefusedError

__all__ = ["SUPERVISOR_HELP", "SupervisorTarget", "client_options", "refused"]

SUPERVISOR_HELP = (
    "Supervisor address (host:port or socket path). "
    f"Default: $CODA_SUPERVISOR, else {DEFAULT_ADDRESS}."
)


@dataclass(frozen=True)
class SupervisorTarget:
    """The supervisor a command talks to, as its options name it."""

    address: str
    token: str | None
    ssl: SSLContext | None

    def client(self) -> Client:
        return Client(self.address, token=self.token, ssl=self.ssl)


def client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--supervisor``, ``--token`` and TLS, passed as ``supervisor=``."""

    @functools.wraps(fn)
    def with_target(
        *args: Any, address: str, token: str | None, ssl: SSLContext | None, **kwargs: Any
    ) -> Any:
        return fn(*args, supervisor=SupervisorTarget(address, token, ssl), **kwargs)

    wrapped = tls_client_options(with_target)
    wrapped = click.option(
        "--token", envvar="CODA_TOKEN", help="Token, if the supervisor requires one."
    )(wrapped)
    return click.option(
        "--supervisor",
        "address",
        envvar="CODA_SUPERVISOR",
        default=DEFAULT_ADDRESS,
        show_default=True,
        help=SUPERVISOR_HELP,
    )(wrapped)


def refused(exc: CodaError) -> click.ClickException:
    """The line to print for a request that failed (exit status 1)."""
    if isinstance(exc, RequestRefusedError):
        return click.ClickException(exc.message)
    return click.ClickException(str(exc))
