"""Running the workflows the supervisor hands this worker.

Each workflow is a coroutine on the worker's event loop, with a
``WorkflowRun`` as the runtime behind ``coda.context``; each attempt is
answered with one ``WorkflowDone``, whatever its code raises or returns. Its spawns are
requests to the supervisor, answered by ``Finished`` messages (or refused by
an ``Error``), except those a rerun finds in the history sent with
``RunWorkflow``: a step this run saw succeed before it started again answers
at once, here, without a round trip.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from .. import registry
from .._outcome import (
    decode_payload,
    encode_value,
    error_from_failure,
    failure_after,
    failure_from,
    reraise_if_cancelled,
)
from ..context import RunInfo, current_runtime
from ..decorators import Spec, check_name
from ..errors import CodaError, ConfigurationError, RequestRefusedError
from ..messages import (
    CachedStep,
    Error,
    Failure,
    Finished,
    Message,
    Payload,
    RunWorkflow,
    Spawn,
    WorkflowDone,
)
from ..protocol import DEFAULT_FRAME_LIMIT
from ..serialization import DEFAULT_SERIALIZER

__all__ = ["WorkflowRun", "WorkflowRunner"]

_key_encoder = msgspec.msgpack.Encoder()


class WorkflowRunner:
    """The workflows of one worker, and the answers their spawns wait for."""

    def __init__(
        self,
        send: Callable[[Message], None],
        accept: frozenset[str] | None,
        value_limit: int = DEFAULT_FRAME_LIMIT,
    ) -> None:
        self._send = send
        self.accept = accept
        self.value_limit = value_limit  # for results and spawn arguments
        self._req_ids = itertools.count(1)
        self._pending: dict[int, tuple[asyncio.Future[Any], str]] = {}
        self._runs: dict[str, asyncio.Task[None]] = {}  # run id -> its attempt here

    @property
    def in_flight(self) -> int:
        """Workflow attempts started and not yet answered."""
        return len(self._runs)

    def start(self, msg: RunWorkflow) -> None:
        job = asyncio.create_task(self._run_workflow(msg))
        self._runs[msg.run_id] = job
        job.add_done_callback(lambda _: self._drop(msg.run_id, job))

    def _drop(self, run_id: str, job: asyncio.Task[None]) -> None:
        if self._runs.get(run_id) is job:
            del self._runs[run_id]

    def stop(self, run_id: str) -> bool:
        """Cancel a workflow attempt: ``CancelledError`` at its current
        ``await``, so its ``try/finally`` runs; it answers as usual. False if
        no attempt of that run is here."""
        job = self._runs.get(run_id)
        if job is None:
            return False
        job.cancel()
        return True

    async def _run_workflow(self, msg: RunWorkflow) -> None:
        """Run one attempt and answer it, whatever happens: the caller waits
        until the ``WorkflowDone`` arrives."""
        run: WorkflowRun | None = None
        outcome: Payload | Failure
        try:
            spec = registry.get_spec(msg.name, "workflow")
            run = WorkflowRun(self, RunInfo(msg.run_id, msg.name, msg.attempt), spec, msg.history)
            outcome = await self._attempt(run, spec, msg)
        except CodaError as exc:  # not a workflow this worker knows
            outcome = failure_from(exc)
        except BaseException as exc:  # cancelled (the loop is closing), or a bug of ours
            outcome = failure_from(exc)
            raise
        finally:
            hits = {} if run is None else dict(run.history_hits)
            if isinstance(outcome, Failure):
                self._send(WorkflowDone(msg.run_id, msg.attempt, failure=outcome, cache_hits=hits))
            else:
                self._send(WorkflowDone(msg.run_id, msg.attempt, result=outcome, cache_hits=hits))

    async def _attempt(self, run: WorkflowRun, spec: Spec, msg: RunWorkflow) -> Payload | Failure:
        token = current_runtime.set(run)
        try:
            kwargs = decode_payload(msg.args, self.accept)
            result = await spec.fn(**kwargs)
            return encode_value(
                result,
                spec.serializer or DEFAULT_SERIALIZER,
                limit=self.value_limit,
                what=f"the result of workflow {msg.name!r}",
            )
        except BaseException as exc:  # user code may raise anything: it is the attempt's failure
            reraise_if_cancelled(exc)
            return failure_after(exc, spec, msg.attempt)
        finally:
            current_runtime.reset(token)
            run.abandon()

    # -- answers to spawns ------------------------------------------------

    def request(self, spawn_for: str, build: Callable[[int], Message]) -> asyncio.Future[Any]:
        req_id = next(self._req_ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = (future, spawn_for)
        self._send(build(req_id))
        return future

    def resolve(self, msg: Finished) -> None:
        entry = self._pending.pop(msg.req_id, None)
        if entry is None or entry[0].done():
            return
        future, kind = entry
        if msg.failure is not None:
            future.set_exception(error_from_failure(msg.failure, kind))
            return
        try:
            future.set_result(decode_payload(msg.result, self.accept))
        except CodaError as exc:
            future.set_exception(exc)

    def reject(self, req_id: int, msg: Error) -> None:
        entry = self._pending.pop(req_id, None)
        if entry is not None and not entry[0].done():
            entry[0].set_exception(RequestRefusedError(msg.code, msg.message))

    def forget(self, req_ids: list[int]) -> None:
        for req_id in req_ids:
            self._pending.pop(req_id, None)


class WorkflowRun:
    """The runtime behind ``coda.context`` for one attempt of one workflow."""

    def __init__(
        self,
        runner: WorkflowRunner,
        info: RunInfo,
        spec: Spec,
        history: Sequence[CachedStep] = (),
    ) -> None:
        self.runner = runner
        self.info = info
        self.serializer = spec.serializer or DEFAULT_SERIALIZER
        self._requests: list[int] = []
        self._history: dict[tuple[str, str, bytes], Payload] = {
            (step.kind, step.name, step.key): step.result for step in history
        }
        self.history_hits: Counter[str] = Counter()

    def spawn(
        self,
        kind: str,
        target: object,
        args: Mapping[str, Any] | None,
        cache_key: object,
        queue: str | None,
    ) -> asyncio.Future[Any]:
        name = check_name(registry.resolve_name(target))
        if args is None:
            args = {}
        if not isinstance(args, Mapping):
            raise ConfigurationError(
                f"args must be a mapping of keyword arguments, got {type(args).__name__}"
            )
        serializer = self._serializer_for(name)
        key = _encode_cache_key(cache_key)
        if key is not None and (kind, name, key) in self._history:
            return self._answer_from_history(kind, name, key)
        limit, what = self.runner.value_limit, f"the arguments of {name!r}"
        payload = encode_value(dict(args), serializer, limit=limit, what=what)

        def build(req_id: int) -> Spawn:
            self._requests.append(req_id)
            return Spawn(
                req_id=req_id,
                run_id=self.info.run_id,
                kind="task" if kind == "task" else "workflow",
                name=name,
                args=payload,
                cache_key=key,
                queue=queue,
            )

        return self.runner.request(kind, build)

    def _answer_from_history(self, kind: str, name: str, key: bytes) -> asyncio.Future[Any]:
        """A spawn this run made, and saw succeed, before it started again."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(decode_payload(self._history[(kind, name, key)], self.runner.accept))
        except CodaError as exc:
            future.set_exception(exc)
        self.history_hits[name] += 1
        return future

    def _serializer_for(self, name: str) -> str:
        try:
            return registry.get_spec(name).serializer or self.serializer
        except CodaError:
            return self.serializer

    def abandon(self) -> None:
        """Forget requests still unanswered when the attempt ends."""
        self.runner.forget(self._requests)


def _encode_cache_key(cache_key: object) -> bytes | None:
    if cache_key is None:
        return None
    parts = list(cache_key) if isinstance(cache_key, list | tuple) else [cache_key]
    try:
        return _key_encoder.encode(parts)
    except (TypeError, msgspec.EncodeError) as exc:
        raise ConfigurationError(
            f"cache_key must hold plain values (str, int, float, bool, None, bytes): {exc}"
        ) from None
