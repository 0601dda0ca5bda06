"""What the blocking and the asyncio client share besides their connection
(``coda._connection``): building requests and reading outcomes. No I/O here."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import registry
from ._outcome import decode_payload, encode_value, error_from_failure
from .errors import ConfigurationError, ResultTimeoutError
from .messages import Finished, Submit

__all__ = ["DEFAULT_ADDRESS", "build_submit", "default_address", "outcome", "submit_timed_out"]

DEFAULT_ADDRESS = "127.0.0.1:42069"


def default_address(address: str | None) -> str:
    return address or os.environ.get("CODA_SUPERVISOR") or DEFAULT_ADDRESS


def build_submit(
    req_id: int,
    target: object,
    args: Mapping[str, Any] | None,
    *,
    serializer: str,
    run_id: str | None,
    queue: str | None,
    wait: bool,
    not_before: float | None = None,
    limit: int | None = None,
) -> Submit:
    """The submit of ``target``; with ``limit`` (the supervisor's, from its
    welcome) arguments larger than it are refused here, before they leave."""
    name = registry.resolve_name(target)
    spec = getattr(target, "spec", None)
    serializer = getattr(spec, "serializer", None) or serializer
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ConfigurationError(
            f"args must be a mapping of keyword arguments, got {type(args).__name__}"
        )
    return Submit(
        req_id=req_id,
        name=name,
        args=encode_value(dict(args), serializer, limit=limit, what=f"the arguments of {name!r}"),
        run_id=run_id,
        queue=queue,
        wait=wait,
        not_before=not_before,
    )


def outcome(message: Finished, accept: frozenset[str] | None = None) -> Any:
    """The run's value, or its failure raised as TaskFailed / WorkflowFailed."""
    if message.failure is not None:
        raise error_from_failure(message.failure, message.kind)
    return decode_payload(message.result, accept)


def submit_timed_out(timeout: float) -> ResultTimeoutError:
    """The error of a submit the supervisor did not accept in time: it may be
    unable to commit (its log says why); the submit may still land, so a
    retry should pass the same ``run_id``."""
    return ResultTimeoutError(
        f"the supervisor did not accept the submit within {timeout:g}s (it may be unable to "
        "write to its store: see its log); retry with the same run_id to submit it only once"
    )
