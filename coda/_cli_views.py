"""``coda runs`` and ``coda show`` for a person: runs and steps as text.

Pure functions of ``JobView`` values (and the time now), so they are tested
without a supervisor. Times are shown in local time, as a person reads a
clock; ``--json`` gives epoch seconds for scripts. A cache key travels as
the MessagePack encoding of the user's key list: it is decoded here for
display, and shown in hex when it is not valid MessagePack.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec

from .messages import JobView

__all__ = [
    "decode_cache_key",
    "describe_cache_key",
    "format_duration",
    "format_runs",
    "format_show",
    "job_dict",
    "parse_since",
    "step_origin",
    "table",
]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?[smhdw])+")
_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_since(value: str, now: float) -> float:
    """Epoch seconds from an ISO date or time (local unless it has an
    offset) or a duration back from ``now`` (``90s``, ``10m``, ``2h``,
    ``1d``, ``1h30m``). Raises ``ValueError`` with the line to show."""
    text = value.strip()
    if _DURATION.fullmatch(text):
        return now - sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is neither a date (2026-11-29, 2026-11-29T06:55, with an optional "
            "offset) nor a duration back from now (30s, 10m, 2h, 1d, 1h30m)"
        ) from None
    return moment.timestamp()  # a naive moment is local time


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _clock(moment: float) -> str:
    return datetime.fromtimestamp(moment).strftime("%Y-%m-%d %H:%M:%S")


def _took(job: JobView, now: float) -> str:
    """How long it ran (or has been running); empty if it never started."""
    if job.started_at is None:
        return ""
    if job.finished_at is None:
        return f"{format_duration(max(0.0, now - job.started_at))} so far"
    return format_duration(max(0.0, job.finished_at - job.started_at))


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Columns as wide as their widest cell, two spaces apart."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def format_runs(runs: Sequence[JobView], now: float | None = None) -> str:
    """The table of ``coda runs``, newest first as the supervisor sent them."""
    if not runs:
        return "no runs match"
    now = time.time() if now is None else now
    header = ("RUN ID", "NAME", "KIND", "STATE", "ATTEMPT", "CREATED", "DURATION")
    rows = [
        (r.id, r.name, r.kind, r.state, str(r.attempt), _clock(r.created_at), _took(r, now))
        for r in runs
    ]
    return "\n".join(table(header, rows))


def decode_cache_key(key: bytes) -> Any:
    """The user's key list, or its bytes in hex (``0x...``) if undecodable."""
    try:
        return msgspec.msgpack.decode(key)
    except msgspec.DecodeError:
        return f"0x{key.hex()}"


def describe_cache_key(key: bytes | None) -> str:
    """The user's key list as JSON (``["event-1"]``), or hex if undecodable."""
    if key is None:
        return ""
    decoded = decode_cache_key(key)
    if isinstance(decoded, str) and decoded.startswith("0x"):
        return decoded
    return json.dumps(decoded, default=str, separators=(",", ":"))


def is_cached(step: JobView, run: JobView) -> bool:
    """Whether a later attempt of the run was answered from this step's
    stored result instead of running it again."""
    return (
        step.cache_key is not None
        and step.state == "succeeded"
        and step.parent_attempt < run.attempt
    )


def step_origin(step: JobView, run: JobView) -> str:
    """Executed or cached, and in which attempt of the run."""
    if is_cached(step, run):
        return f"cached (ran in attempt {step.parent_attempt})"
    if step.state in ("queued", "delayed"):
        return "not started"
    verb = "running" if step.state == "running" else "executed"
    return verb if run.attempt == 1 else f"{verb} in attempt {step.parent_attempt}"


def format_show(run: JobView, steps: Sequence[JobView], now: float | None = None) -> str:
    """``coda show``: the run, a table of its steps, then their errors."""
    now = time.time() if now is None else now
    attempts = "1 attempt" if run.attempt == 1 else f"{run.attempt} attempts"
    lines = [
        f"run {run.id}",
        f"  {run.kind} {run.name} on queue {run.queue}",
        f"  {run.state} after {attempts}" + (f", {run.losses} lost workers" if run.losses else ""),
        f"  created {_clock(run.created_at)}" + _times(run, run.created_at, now),
    ]
    if run.parent_run:
        lines.append(f"  spawned by run {run.parent_run} (attempt {run.parent_attempt})")
    lines += ["", *_steps_table(run, steps, now)]
    failures = [(i, s) for i, s in enumerate(steps, 1) if s.failure is not None]
    for index, step in failures:
        lines += ["", *_failure(f"step {index} ({step.name})", step)]
    if run.failure is not None:
        lines += ["", *_failure("the run", run)]
    return "\n".join(lines)


def _times(job: JobView, origin: float, now: float) -> str:
    parts = []
    if job.started_at is not None:
        attempt = "" if job.attempt == 1 else f"attempt {job.attempt} "
        parts.append(f"{attempt}started {_offset(job.started_at, origin)}")
    if job.finished_at is not None:
        parts.append(f"finished {_offset(job.finished_at, origin)}")
    took = _took(job, now)
    if took:
        parts.append(f"took {took}")
    return (", " + ", ".join(parts)) if parts else ""


def _offset(moment: float | None, origin: float) -> str:
    return "" if moment is None else f"+{format_duration(max(0.0, moment - origin))}"


def _steps_table(run: JobView, steps: Sequence[JobView], now: float) -> list[str]:
    if not steps:
        return ["no steps"]
    header = ("#", "STEP", "CACHE KEY", "ATTEMPTS", "STARTED", "DURATION", "STATE", "HOW")
    rows = []
    for index, step in enumerate(steps, 1):
        started = _offset(step.started_at, run.created_at)
        rows.append(
            (
                str(index),
                step.name,
                describe_cache_key(step.cache_key),
                str(step.attempt),
                started,
                _took(step, now),
                step.state,
                step_origin(step, run),
            )
        )
    return [f"steps ({len(steps)}):", *("  " + line for line in table(header, rows))]


def _failure(what: str, job: JobView) -> list[str]:
    assert job.failure is not None
    lines = [f"{what} failed: {job.failure.type_name}: {job.failure.message}"]
    lines += ["  " + line for line in job.failure.traceback.rstrip().splitlines()]
    return lines


def job_dict(job: JobView, run: JobView | None = None) -> dict[str, Any]:
    """A run or step for ``--json``: every field, the cache key decoded, and
    for a step (``run`` given) whether it answered a later attempt from the cache."""
    data: dict[str, Any] = {name: getattr(job, name) for name in job.__struct_fields__}
    data["cache_key"] = None if job.cache_key is None else decode_cache_key(job.cache_key)
    if job.failure is not None:
        failure = job.failure
        data["failure"] = {name: getattr(failure, name) for name in failure.__struct_fields__}
    if run is not None:
        data["cached"] = is_cached(job, run)
    return data
