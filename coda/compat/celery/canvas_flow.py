"""A Celery canvas run as one Coda workflow, with Celery's semantics.

The workflow ``coda.compat.celery.canvas`` receives the frozen tree
(``canvas``) and drives it; every leaf is a Coda task spawned with
``cache_key=[task_id]`` (a rerun of the workflow never reruns a finished
leaf) whose arguments are the protocol-v2 message Celery would have sent
for it (``message``), minus the ``chain``/``chord`` embed: the workflow, not
the leaves, decides what runs next. So each leaf executes through Celery's
tracer with its frozen id and stores its result in the app's backend, where
the caller's ``AsyncResult``/``GroupResult`` reads it.

Semantics (``celery/canvas.py``):

- chain: the previous result is prepended to the next step's args unless
  the step is immutable (``.si()``); a failed step stores its exception
  under every id after it, so the chain's result (its last step's id)
  raises the original exception;
- group: members run in parallel with the same partial args; results in
  the group's (frozen) order;
- chord: the body gets the list of header results, in header order; if a
  header member failed, the body does not run and its ids store
  ``ChordError("Dependency <id> raised <exc>")`` (the first failed member in
  header order), with the original exception as ``__cause__``.

Failure records are written by the internal task
``coda.compat.celery.propagate_failure`` (it needs the result backend, so it
runs on a worker's main thread like any Celery task).
"""

from __future__ import annotations

import asyncio
from typing import Any

from celery import states
from celery.backends.base import _create_chord_error_with_cause
from kombu.serialization import dumps
from kombu.utils.functional import maybe_list

from coda import context, registry
from coda.decorators import DEFAULT_QUEUE, Spec
from coda.errors import CodaError, TaskFailed
from coda.retry import RetryPolicy

from .adopt import coda_queue
from .canvas import Chain, Chord, Group, Leaf, Node, decode_tree, leaves, result_id
from .message import CeleryMessage
from .results import rebuild_exception

__all__ = ["CANVAS_WORKFLOW", "PROPAGATE_TASK", "register_canvas_units"]

CANVAS_WORKFLOW = "coda.compat.celery.canvas"
PROPAGATE_TASK = "coda.compat.celery.propagate_failure"


class StepFailed(CodaError):
    """A leaf failed; ``source_id`` holds the exception to propagate, ``culprit_id``
    names the member whose result failed (what a chord reports)."""

    def __init__(self, source_id: str, culprit_id: str, failure: TaskFailed) -> None:
        super().__init__(f"{culprit_id} failed: {failure}")
        self.source_id = source_id
        self.culprit_id = culprit_id
        self.failure = failure


def leaf_message(
    app: Any,
    leaf: Leaf,
    args: list[Any],
    kwargs: dict[str, Any],
    *,
    root_id: str,
    parent_id: str | None,
    group_id: str | None,
) -> CeleryMessage:
    """The message Celery would publish for this leaf, without chain/chord embed."""
    options = leaf.options
    task = app.tasks.get(leaf.name)
    built = app.amqp.as_task_v2(
        leaf.task_id,
        leaf.name,
        args,
        kwargs,
        group_id=group_id,
        group_index=options.get("group_index") if group_id else None,
        expires=options.get("expires"),
        time_limit=options.get("time_limit"),
        soft_time_limit=options.get("soft_time_limit"),
        root_id=root_id,
        parent_id=parent_id,
        callbacks=maybe_list(options.get("link")),
        errbacks=maybe_list(options.get("link_error")),
        ignore_result=bool(options.get("ignore_result", False)),
        shadow=options.get("shadow"),
    )
    headers = dict(built.headers)
    headers.update(options.get("headers") or {})
    serializer = options.get("serializer") or getattr(task, "serializer", None)
    content_type, encoding, body = dumps(built.body, serializer or app.conf.task_serializer)
    queue = options.get("queue")
    properties = dict(built.properties, priority=options.get("priority"))
    properties["delivery_info"] = {"exchange": "", "routing_key": queue}
    return CeleryMessage(
        headers=headers,
        properties=properties,
        body=body.encode(encoding) if isinstance(body, str) else body,
        content_type=content_type,
        content_encoding=encoding,
    )


def _ids_after_failure(nodes: list[Node]) -> list[str]:
    """Every result id in ``nodes``: leaves, groups and chord headers."""
    ids: list[str] = []
    for node in nodes:
        ids.extend(leaf.task_id for leaf in leaves(node))
        if isinstance(node, Group | Chord):
            ids.append(node.group_id)
    return ids


class CanvasRun:
    """One execution of a tree inside the canvas workflow."""

    def __init__(self, app: Any, root_id: str) -> None:
        self.app = app
        self.root_id = root_id

    async def run(
        self,
        node: Node,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent_id: str | None,
        group_id: str | None,
    ) -> Any:
        match node:
            case Leaf():
                return await self._leaf(node, args, kwargs, parent_id, group_id)
            case Chain():
                return await self._chain(node, args, kwargs, parent_id, group_id)
            case Group():
                return await self._members(node.members, node.group_id, args, kwargs, parent_id)
            case Chord():
                return await self._chord(node, args, kwargs, parent_id, group_id)
        raise TypeError(node)

    async def _leaf(
        self,
        leaf: Leaf,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent_id: str | None,
        group_id: str | None,
    ) -> Any:
        call_args = list(leaf.args) if leaf.immutable else [*args, *leaf.args]
        call_kwargs = dict(leaf.kwargs) if leaf.immutable else {**leaf.kwargs, **kwargs}
        message = leaf_message(
            self.app,
            leaf,
            call_args,
            call_kwargs,
            root_id=self.root_id,
            parent_id=parent_id,
            group_id=group_id,
        )
        queue = coda_queue(self.app, leaf.options.get("queue"))
        try:
            return await context.spawn_task(
                leaf.name, args=message.to_job_args(), cache_key=[leaf.task_id], queue=queue
            )
        except TaskFailed as failure:
            raise StepFailed(leaf.task_id, leaf.task_id, failure) from None

    async def _chain(
        self,
        chain: Chain,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent_id: str | None,
        group_id: str | None,
    ) -> Any:
        value: Any = None
        last = len(chain.steps) - 1
        for index, step in enumerate(chain.steps):
            step_args, step_kwargs = (args, kwargs) if index == 0 else ((value,), {})
            try:
                value = await self.run(
                    step, step_args, step_kwargs, parent_id, group_id if index == last else None
                )
            except StepFailed as failed:
                rest = _ids_after_failure(chain.steps[index + 1 :])
                await self._propagate(failed.source_id, rest, None)
                raise StepFailed(failed.source_id, result_id(chain), failed.failure) from None
            parent_id = result_id(step)
        return value

    async def _members(
        self,
        members: list[Node],
        group_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent_id: str | None,
    ) -> list[Any]:
        runs = [self.run(member, args, kwargs, parent_id, group_id) for member in members]
        results = await asyncio.gather(*runs, return_exceptions=True)
        for member, outcome in zip(members, results, strict=True):
            if isinstance(outcome, StepFailed):  # the first failed member in header order
                raise StepFailed(outcome.source_id, result_id(member), outcome.failure)
            if isinstance(outcome, BaseException):
                raise outcome
        return list(results)

    async def _chord(
        self,
        chord: Chord,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        parent_id: str | None,
        group_id: str | None,
    ) -> Any:
        try:
            values = await self._members(chord.header, chord.group_id, args, kwargs, parent_id)
        except StepFailed as failed:
            body_ids = _ids_after_failure([chord.body])
            await self._propagate(failed.source_id, body_ids, failed.culprit_id)
            body = result_id(chord.body)
            raise StepFailed(body, body, failed.failure) from None
        return await self.run(chord.body, (values,), {}, None, group_id)

    async def _propagate(self, source_id: str, targets: list[str], culprit: str | None) -> None:
        if not targets:
            return
        await context.spawn_task(
            PROPAGATE_TASK,
            args={"source_id": source_id, "target_ids": targets, "culprit_id": culprit},
            cache_key=["propagate", source_id, culprit or ""],
        )


def _workflow(app: Any) -> Any:
    async def run_canvas(
        tree: bytes, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> Any:
        node = decode_tree(tree)
        root_id = next(leaves(node)).task_id
        run = CanvasRun(app, root_id)
        try:
            return await run.run(node, tuple(args or ()), dict(kwargs or {}), None, None)
        except StepFailed as failed:
            raise rebuild_exception(failed.failure) from None

    run_canvas.__qualname__ = run_canvas.__name__ = "celery:canvas"
    return run_canvas


def _propagate_entry(app: Any) -> Any:
    def propagate_failure(source_id: str, target_ids: list[str], culprit_id: str | None) -> None:
        """Store the failure of ``source_id`` (or a ChordError naming ``culprit_id``)."""
        backend = app.backend
        meta = backend.get_task_meta(source_id)
        state, exc = meta.get("status"), meta.get("result")
        if state not in states.PROPAGATE_STATES or not isinstance(exc, BaseException):
            state, exc = states.FAILURE, RuntimeError(f"task {source_id} failed")
        traceback = meta.get("traceback")
        if culprit_id is not None:
            culprit = backend.get_task_meta(culprit_id).get("result", exc)
            message = f"Dependency {culprit_id} raised {culprit!r}"
            exc = _create_chord_error_with_cause(message=message, original_exc=culprit)
            state, traceback = states.FAILURE, None
        for task_id in target_ids:
            backend.store_result(task_id, exc, state, traceback=traceback)

    propagate_failure.__qualname__ = propagate_failure.__name__ = "celery:propagate_failure"
    return propagate_failure


def register_canvas_units(app: Any, executor: Any) -> None:
    """The canvas workflow and its failure task (registered in every role)."""
    registry.register(
        Spec(
            name=CANVAS_WORKFLOW,
            kind="workflow",
            fn=_workflow(app),
            is_async=True,
            queue=DEFAULT_QUEUE,
            retry=RetryPolicy(max_retries=0),
            serializer="msgpack",
        )
    )
    registry.register(
        Spec(
            name=PROPAGATE_TASK,
            kind="task",
            fn=_propagate_entry(app),
            is_async=False,
            queue=DEFAULT_QUEUE,
            retry=RetryPolicy(max_retries=0),
            serializer="json",
            main_thread=True,
        )
    )
