"""Small numeric helpers: percentiles, rates and resident memory."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["cpu_seconds", "percentile", "process_cpu_seconds", "rate", "rss_bytes"]

_TICK = os.sysconf("SC_CLK_TCK")


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by the nearest-rank method.

    Nearest rank rather than interpolation: a p99 is then a latency that
    really happened, which is what a reader of a latency table assumes.
    """
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def rate(count: int, seconds: float) -> float:
    """Items per second, guarding against a zero-length interval."""
    return count / max(seconds, 1e-9)


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` (VmRSS from /proc), in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cpu_seconds(session: int) -> float:
    """User + system CPU time of every live process in ``session``.

    The supervisor and the Celery worker are started as session leaders, so
    their session id is their pid and it covers their worker processes too.
    CPU time, unlike wall time, barely moves when other work shares the
    machine, so it is the steadier figure on a busy box.
    """
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process exited meanwhile
            continue
        if int(fields[3]) == session:
            total += int(fields[11]) + int(fields[12])
    return total / _TICK


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process (e.g. redis-server)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _TICK
