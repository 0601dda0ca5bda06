"""The result table: rows, their targets, and the machine they ran on.

A row holds numbers, not strings; formatting happens once, here. The ratio
of a row depends on its kind, and the table says which way is better:

    throughput   Coda ÷ Celery   higher is better   (target: ≥ 10x)
    latency      Coda ÷ floor    lower is better    (target: ≤ 2x or ≤ 4x)
    cost         Coda ÷ Celery   lower is better    (memory, CPU time per task)
    absolute     no baseline; the target is a bound on the Coda figure
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Row", "baselines_table", "machine", "table"]

Kind = str  # "throughput" | "latency" | "cost" | "absolute"


@dataclass(frozen=True)
class Row:
    """One line of the table.

    ``goal`` is the number the target compares against: a minimum ratio for
    throughput, a maximum ratio for latency, a maximum Coda value for cost
    and absolute rows. ``None`` means the row is informational.

    ``others``: when the baseline was measured in several configurations
    (Celery on Redis and RabbitMQ, json and msgpack), each one's figure by
    label; ``baseline`` is then the best of them, ``baseline_label`` its label.
    """

    name: str
    kind: Kind
    coda: float
    unit: str
    baseline: float | None = None
    baseline_label: str = "Celery"
    goal: float | None = None
    target: str = ""
    others: tuple[tuple[str, float], ...] = ()

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.coda / self.baseline

    @property
    def met(self) -> bool | None:
        if self.goal is None:
            return None
        if self.kind == "throughput":
            return self.ratio is not None and self.ratio >= self.goal
        if self.kind == "latency":
            return self.ratio is not None and self.ratio <= self.goal
        return self.coda <= self.goal


def _number(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 1 else f"{value:,.1f} ms"
    if unit == "µs":
        return f"{value:,.0f} µs"
    if unit == "B":
        return f"{value:,.0f} B"
    return f"{value:,.2f} {unit}"


def _ratio(row: Row) -> str:
    ratio = row.ratio
    if ratio is None:
        return "—"
    if row.baseline_label == "floor":
        return f"{ratio:.1f}x floor"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:.0f}x"


def _met(row: Row) -> str:
    met = row.met
    return "—" if met is None else ("yes" if met else "**no**")


COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("benchmark", lambda r: r.name),
    ("Coda", lambda r: _number(r.coda, r.unit)),
    (
        "Celery / floor",
        lambda r: (
            "—" if r.baseline is None else f"{_number(r.baseline, r.unit)} ({r.baseline_label})"
        ),
    ),
    ("ratio", _ratio),
    ("target", lambda r: r.target or "—"),
    ("met?", _met),
)


def table(rows: Sequence[Row]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    cells = [[render(row) for _, render in COLUMNS] for row in rows]
    headers = [name for name, _ in COLUMNS]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(c) for c in cells]
    return "\n".join(out)


def baselines_table(rows: Sequence[Row]) -> str:
    """Every configuration of the baseline, for the rows measured in several."""
    several = [row for row in rows if row.others]
    if not several:
        return ""
    labels = list(dict.fromkeys(label for row in several for label, _ in row.others))
    headers = ["benchmark", *labels]
    cells = []
    for row in several:
        figures = dict(row.others)
        cells.append(
            [row.name, *(_number(figures[k], row.unit) if k in figures else "—" for k in labels)]
        )
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    return "\n".join(out + [line(c) for c in cells])


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_server_version(url: str) -> str:
    try:
        import redis

        return str(redis.Redis.from_url(url).info("server")["redis_version"])
    except Exception:  # the report must not fail for want of a version string
        try:
            out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)
            return out.stdout.strip() or "unknown"
        except OSError:
            return "unknown"


def _rabbitmq_version(url: str) -> str:
    try:
        from kombu import Connection

        with Connection(url, connect_timeout=5) as conn:
            conn.connect()
            version = conn.connection.server_properties.get("version", b"unknown")
            return version.decode() if isinstance(version, bytes) else str(version)
    except Exception:  # the report must not fail for want of a version string
        return "unknown"


def _load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg())


def machine(redis_url: str, command: str, rabbitmq_url: str | None = None) -> str:
    """Date, machine, versions and the command, as Markdown bullet points."""
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    versions = ", ".join(
        f"{name} {_version(name)}"
        for name in ("celery", "kombu", "amqp", "redis", "msgpack", "msgspec", "uvloop")
    )
    return "\n".join(
        [
            f"- date: {now}",
            f"- machine: {len(os.sched_getaffinity(0))} CPUs (nproc), {_cpu_model()}, "
            f"{platform.platform()}",
            f"- Python {platform.python_version()}; redis-server "
            f"{_redis_server_version(redis_url)}; RabbitMQ "
            f"{'not used' if rabbitmq_url is None else _rabbitmq_version(rabbitmq_url)}; "
            f"{versions}",
            f"- load average at the end (1, 5, 15 min): {_load()} — other work on the machine "
            "inflates wall-clock figures; CPU-per-item rows move much less",
            f"- command: `{command}`",
        ]
    )
