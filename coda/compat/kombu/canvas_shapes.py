"""The shapes of canvas results the ``coda://`` result backend reads.

Celery hands a backend results and signatures as trees (a ``GroupResult``
may hold others; a chained group or chord is a signature dict). The
supervisor joins a chord's header flat, by task id; these functions go
between the two: the ids to join (``leaf_ids``), the values nested back as
the header is (``nested``, Celery's structure for a header holding a group),
and the ids a caller of a chained group or chord waits on (``tracked_ids``,
``chained_waits``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from celery.result import GroupResult, ResultBase

__all__ = ["chained_waits", "leaf_ids", "nested", "tracked_ids"]


def leaf_ids(results: Any) -> Iterator[str]:
    """The task ids of a header's results, depth first: the members a chord joins."""
    for result in results:
        if isinstance(result, GroupResult):
            yield from leaf_ids(result.results)
        elif isinstance(result, ResultBase):
            yield result.id
        else:
            yield str(result)


def tracked_ids(signature: Any) -> Iterator[str]:
    """The result ids a caller of ``signature`` waits on: a task's own, a chain's
    last step's, a group's members', a chord's body's."""
    kind = signature.get("subtask_type")
    kwargs = signature.get("kwargs") or {}
    if kind == "group":
        for member in kwargs.get("tasks") or ():
            yield from tracked_ids(member)
    elif kind == "chain":
        steps = kwargs.get("tasks") or ()
        if steps:
            yield from tracked_ids(steps[-1])
    elif kind == "chord":
        if kwargs.get("body") is not None:
            yield from tracked_ids(kwargs["body"])
    else:
        task_id = (signature.get("options") or {}).get("task_id")
        if task_id:
            yield str(task_id)


def chained_waits(chain: Any) -> Iterator[str]:
    """The ids waited on in the groups and chords of a request's remaining ``chain``."""
    for step in chain or ():
        if isinstance(step, dict) and step.get("subtask_type") in ("group", "chord"):
            yield from tracked_ids(step)


def nested(results: Any, values: Iterator[Any]) -> list[Any]:
    """The flat ``values`` (in ``leaf_ids`` order) shaped as ``results``."""
    return [
        nested(result.results, values) if isinstance(result, GroupResult) else next(values)
        for result in results
    ]
