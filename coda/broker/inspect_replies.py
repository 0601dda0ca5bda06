"""What the supervisor's Celery node answers to ``celery inspect``.

Each function builds one answer in the shape a Celery worker gives
(``celery/worker/control.py``, ``Request.info``), from what the supervisor
holds: the Coda jobs of Celery tasks (running, waiting, delayed) through
the extension host, and the ETA messages the broker holds for stock
workers. Arguments are shown as Celery shows them with ``safe=True``: the
``argsrepr``/``kwargsrepr`` headers, never the decoded body.
"""

from __future__ import annotations

import os
import resource
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..supervisor.extension import ExtensionHost, JobSummary
from .celery_tasks import TaskMessage, from_job_args, from_kombu, iso_time
from .queues import BrokerQueue, Envelope

__all__ = [
    "MAX_LISTED",
    "active",
    "active_queues",
    "celery_jobs",
    "registered",
    "reserved",
    "scheduled",
    "stats",
]

MAX_LISTED = 1000  # entries of one reply (Celery's are bounded by prefetch)


def celery_jobs(
    host: ExtensionHost, wanted: Callable[[JobSummary], bool] = lambda job: True
) -> Iterator[tuple[JobSummary, TaskMessage]]:
    """The unfinished Coda jobs that carry a Celery message, oldest first;
    only those ``wanted`` are decoded, and at most ``MAX_LISTED`` of them."""
    found = 0
    for job in host.jobs("task"):
        if found >= MAX_LISTED:
            return
        message = from_job_args(job.args) if wanted(job) else None
        if message is not None:
            found += 1
            yield job, message


def _request(message: TaskMessage, job: JobSummary | None = None) -> dict[str, Any]:
    pid = None if job is None else job.worker_pid
    return {
        "id": message.id,
        "name": message.name,
        "args": message.argsrepr,
        "kwargs": message.kwargsrepr,
        "type": message.name,
        "hostname": f"coda-{pid}@{socket.gethostname()}" if pid else None,
        "time_start": None if job is None else job.started_at,
        "acknowledged": bool(job is not None and job.started),
        "delivery_info": message.delivery_info(),
        "worker_pid": pid if job is not None and job.started else None,
    }


def active(host: ExtensionHost) -> list[dict[str, Any]]:
    """Celery tasks running on Coda workers now."""
    return [_request(m, job) for job, m in celery_jobs(host, lambda job: job.started)]


def reserved(host: ExtensionHost) -> list[dict[str, Any]]:
    """Celery tasks the supervisor holds for its workers and that are due:
    waiting in a queue, or sent to a worker that has not started them."""

    def due(job: JobSummary) -> bool:
        return job.state == "queued" or (job.state == "running" and not job.started)

    return [_request(m, job) for job, m in celery_jobs(host, due)]


def scheduled(
    host: ExtensionHost, held: Iterable[tuple[BrokerQueue, Envelope, float]]
) -> list[dict[str, Any]]:
    """ETA tasks the supervisor holds: Coda jobs waiting for their ETA (or a
    retry's countdown), and messages held for stock workers."""
    found: list[dict[str, Any]] = []
    for job, message in celery_jobs(host, lambda job: job.state == "delayed"):
        eta = message.eta or iso_time(job.ready_at)
        found.append({"eta": eta, "priority": message.priority, "request": _request(message)})
    for _queue, envelope, due in held:
        if len(found) >= MAX_LISTED:
            break
        held_message = from_kombu(envelope.body)
        if held_message is not None:
            eta = held_message.eta or iso_time(due)
            found.append(
                {
                    "eta": eta,
                    "priority": held_message.priority,
                    "request": _request(held_message),
                }
            )
    return found[:MAX_LISTED]


def registered(host: ExtensionHost) -> list[str]:
    return host.task_names()


def active_queues(host: ExtensionHost) -> list[dict[str, Any]]:
    """The Coda queues this supervisor's workers consume (``--queues``)."""
    return [
        {
            "name": queue,
            "exchange": {"name": queue, "type": "direct", "durable": True, "auto_delete": False},
            "routing_key": queue,
            "durable": True,
            "exclusive": False,
            "auto_delete": False,
            "no_ack": False,
            "alias": None,
            "queue_arguments": None,
            "binding_arguments": None,
            "consumer_arguments": None,
            "bindings": [],
            "no_declare": None,
            "expires": None,
            "message_ttl": None,
            "max_length": None,
            "max_length_bytes": None,
            "max_priority": None,
        }
        for queue in host.config.queues
    ]


def stats(host: ExtensionHost, started_at: float, clock: int) -> dict[str, Any]:
    """A Celery worker's ``stats`` for the whole supervisor: its workers are
    the pool's processes."""
    workers = host.workers()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = {
        name: sum(counts.get(k, 0) for k in ("succeeded", "failed", "cancelled"))
        for name, counts in host.counts().items()
    }
    config = host.config
    return {
        "total": {name: count for name, count in total.items() if count},
        "pid": os.getpid(),
        "clock": str(clock),
        "uptime": round(time.time() - started_at),
        "pool": {
            "implementation": "coda",
            "max-concurrency": sum(w.task_slots for w in workers),
            "processes": [w.pid for w in workers],
            "max-tasks-per-child": "N/A",
            "put-guarded-by-semaphore": False,
            "timeouts": [0, 0],
        },
        "broker": {
            "hostname": config.listen or config.unix_socket,
            "transport": "coda",
            "port": None,
            "virtual_host": "/",
            "userid": None,
            "insist": False,
            "ssl": bool(config.tls_cert),
            "login_method": None,
            "heartbeat": None,
            "connect_timeout": None,
            "uri_prefix": None,
            "transport_options": {},
            "alternates": [],
            "failover_strategy": None,
        },
        "prefetch_count": config.task_prefetch * max(1, len(workers)),
        "rusage": {
            "utime": usage.ru_utime,
            "stime": usage.ru_stime,
            "maxrss": usage.ru_maxrss,
            "minflt": usage.ru_minflt,
            "majflt": usage.ru_majflt,
            "nvcsw": usage.ru_nvcsw,
            "nivcsw": usage.ru_nivcsw,
        },
    }
