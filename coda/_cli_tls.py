"""The TLS options of the ``coda`` commands, kept apart from cli.py.

``tls_server_options`` adds ``--tls-cert/--tls-key/--tls-ca`` to
``coda supervisor`` (passed through as ``tls_cert``, ``tls_key``,
``tls_ca``). ``tls_client_options`` adds ``--tls/--tls-ca/--tls-cert/
--tls-key`` to the client commands and hands them one ``ssl`` argument:
an ``ssl.SSLContext``, or None for plain TCP.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ._tls import client_context_from_files
from .errors import CodaError

__all__ = ["tls_client_options", "tls_server_options"]

F = TypeVar("F", bound=Callable[..., Any])

PEM_FILE = click.Path(exists=True, dir_okay=False, readable=True)


def tls_server_options(fn: F) -> F:
    options = [
        click.option(
            "--tls-cert",
            type=PEM_FILE,
            envvar="CODA_TLS_CERT",
            help="Serve TLS on the TCP listener with this certificate (PEM).",
        ),
        click.option(
            "--tls-key",
            type=PEM_FILE,
            envvar="CODA_TLS_KEY",
            help="Private key of --tls-cert, unless it is in the same file.",
        ),
        click.option(
            "--tls-ca",
            type=PEM_FILE,
            envvar="CODA_TLS_CLIENT_CA",
            help="Require client certificates signed by this CA (mutual TLS).",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def tls_client_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def with_context(
        *args: Any,
        tls: bool,
        tls_ca: str | None,
        tls_cert: str | None,
        tls_key: str | None,
        **kwargs: Any,
    ) -> Any:
        try:
            context = client_context_from_files(enabled=tls, ca=tls_ca, cert=tls_cert, key=tls_key)
        except CodaError as exc:
            raise click.ClickException(str(exc)) from None
        return fn(*args, ssl=context, **kwargs)

    options = [
        click.option("--tls", is_flag=True, help="Speak TLS, trusting the system's CAs."),
        click.option(
            "--tls-ca",
            type=PEM_FILE,
            envvar="CODA_TLS_CA",
            help="Speak TLS, trusting this CA for the supervisor's certificate.",
        ),
        click.option(
            "--tls-cert",
            type=PEM_FILE,
            envvar="CODA_TLS_CLIENT_CERT",
            help="Client certificate (PEM) for a supervisor that requires one.",
        ),
        click.option(
            "--tls-key",
            type=PEM_FILE,
            envvar="CODA_TLS_CLIENT_KEY",
            help="Private key of --tls-cert, unless it is in the same file.",
        ),
    ]
    wrapped: Callable[..., Any] = with_context
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped
