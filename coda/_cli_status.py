"""``coda status`` for a person: the supervisor's status dict as aligned text.

It reads the dict defensively (``.get`` with defaults) because supervisors of
other versions, and extensions, add and move keys; ``--json`` prints the dict
itself for scripts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ._cli_views import table

__all__ = ["broker_statistics", "format_status"]


def format_status(data: dict[str, Any]) -> str:
    lines = _supervisor(data.get("supervisor", {}))
    lines += ["", *_workers(data)]
    lines += ["", *_queues(data)]
    lines += [
        "",
        f"in flight: {data.get('runs_in_flight', 0)} runs, {data.get('jobs_in_flight', 0)} jobs",
    ]
    schedules = data.get("schedules")
    if schedules:
        lines += ["", *_schedules(schedules)]
    broker = broker_statistics(data)
    if broker is not None and (broker.get("queues") or broker.get("connections")):
        lines += ["", *_broker(broker)]
    names = data.get("names", {})
    if names:
        lines += ["", *_names(names)]
    return "\n".join(lines)


def broker_statistics(data: dict[str, Any]) -> dict[str, Any] | None:
    """The ``coda://`` broker's statistics: under ``broker``, or under the
    name of the supervisor extension that serves it."""
    extensions = data.get("extensions")
    candidates = [data.get("broker")]
    if isinstance(extensions, dict):
        candidates += list(extensions.values())
    for candidate in candidates:
        if isinstance(candidate, dict) and isinstance(candidate.get("queues"), dict):
            return candidate
    return None


def _supervisor(sup: dict[str, Any]) -> list[str]:
    addresses = ", ".join(sup.get("addresses", []))
    lines = [
        f"supervisor {sup.get('id')} (pid {sup.get('pid')}) on {addresses}, "
        f"up {sup.get('uptime')}s, {sup.get('worker_restarts', 0)} worker restarts"
    ]
    if sup.get("state"):
        lines.append(f"state: {sup['state']}")
    if sup.get("dashboard"):
        lines.append(f"dashboard: {sup['dashboard']}")
    connections = sup.get("connections")
    if isinstance(connections, dict):
        lines.append(_connections(connections, sup.get("wrong_tokens", {})))
    return lines


def _connections(connections: dict[str, Any], tokens: dict[str, Any]) -> str:
    line = f"connections: {connections.get('open', 0)} of at most {connections.get('limit')}"
    refusals = [
        (connections.get("refused_at_limit", 0), "refused at the limit"),
        (connections.get("handshake_timeouts", 0), "closed without a hello in time"),
        (connections.get("closed_over_pre_auth_budget", 0), "closed holding too much before it"),
        (tokens.get("refused_unchecked", 0), "wrong-token retries refused unchecked"),
    ]
    said = [f"{count} {what}" for count, what in refusals if count]
    return line + (f" ({'; '.join(said)})" if said else "")


def _workers(data: dict[str, Any]) -> list[str]:
    workers = data.get("workers", [])
    if not workers:
        started = data.get("supervisor", {}).get("worker_processes")
        why = "started with --workers 0" if started == 0 else "none connected yet"
        return [f"workers: none ({why})"]
    lines = ["workers:"]
    for w in workers:
        lines.append(
            f"  #{w['id']:<4} pid {w['pid']:<8} tasks {w['tasks']:<6} held {w.get('held', 0):<4} "
            f"workflows {w['workflows']:<8} queues {','.join(w['queues'])}"
        )
    return lines


def _queues(data: dict[str, Any]) -> list[str]:
    lines = ["queues:"]
    for name, counts in data.get("queues", {}).items():
        tasks, workflows = counts.get("tasks", 0), counts.get("workflows", 0)
        lines.append(f"  {name:<20} {tasks} tasks, {workflows} workflows waiting")
    lines.append(f"  delayed (retry wait): {data.get('delayed', 0)}")
    return lines


def _broker(broker: dict[str, Any]) -> list[str]:
    """Celery's queues on ``coda://``: ready, delivered but not acked, held
    until their ETA, and how many consumers each has."""
    queues: dict[str, dict[str, int]] = broker.get("queues", {})
    width = max([len("queue"), *(len(name) for name in queues)])
    lines = [
        f"broker (coda://): {broker.get('connections', 0)} connections, "
        f"{broker.get('exchanges', 0)} exchanges, {len(queues)} queues",
        f"  {'queue':<{width}}  {'ready':>7} {'unacked':>7} {'held':>7} {'consumers':>9}",
    ]
    for name, q in queues.items():
        lines.append(
            f"  {name:<{width}}  {q.get('ready', 0):>7} {q.get('unacked', 0):>7} "
            f"{q.get('held', 0):>7} {q.get('consumers', 0):>9}"
        )
    unroutable = broker.get("unroutable")
    if isinstance(unroutable, dict) and unroutable:
        by_exchange = ", ".join(f"{name or '(default)'} {n}" for name, n in unroutable.items())
        lines.append(
            f"  unroutable: {sum(unroutable.values())} messages no queue was bound to "
            f"({by_exchange})"
        )
    results = broker.get("results")
    if isinstance(results, dict):
        lines.append(
            f"  results: {results.get('records', 0)} stored, {results.get('waiters', 0)} "
            f"waiting, {results.get('chords', 0)} chords"
        )
    return lines


def _names(names: dict[str, dict[str, int]]) -> list[str]:
    header = (
        f"  {'name':<48} {'succeeded':>9} {'failed':>7} {'retried':>8} {'requeued':>8}"
        f" {'cache hits':>10}"
    )
    lines = ["per name:", header]
    for name, c in names.items():
        lines.append(
            f"  {name:<48} {c.get('succeeded', 0):>9} {c.get('failed', 0):>7} "
            f"{c.get('retried', 0):>8} {c.get('requeued', 0):>8} {c.get('cache_hits', 0):>10}"
        )
    return lines


def _schedules(schedules: list[dict[str, Any]]) -> list[str]:
    """Each schedule with its next and last ticks (local time), and how it
    treats ticks missed while no supervisor ran it."""
    rows = []
    for entry in schedules:
        missed = str(entry.get("missed", ""))
        if entry.get("refused"):
            missed += f", {entry['refused']} refused"
        rows.append(
            (
                str(entry.get("name")),
                str(entry.get("schedule")),
                _moment(entry.get("next")),
                _moment(entry.get("last")),
                missed,
            )
        )
    header = ("name", "schedule", "next tick", "last tick", "missed")
    return ["schedules:", *("  " + line for line in table(header, rows))]


def _moment(epoch: object) -> str:
    if not isinstance(epoch, int | float):
        return "-"
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
