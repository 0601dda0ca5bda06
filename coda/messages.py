"""The typed messages of the wire protocol.

Every frame carries exactly one of the structs below, encoded as a MessagePack
array whose first element is the message's tag. Structs are frozen: a message
is a fact about the past, never edited in place. Payloads (task arguments and
results) stay opaque bytes with a content type, so the supervisor never
decodes user data and never needs user classes; it relays them as views of
the frames they arrived in.

Who sends what::

    any      → any        Hello (first frame), Welcome, Error
    client   → supervisor Submit, Await, CancelRun, RunsRequest, ShowRequest,
                          PurgeQueue, StatusRequest
    worker   → supervisor Spawn, Started, TaskDone, WorkflowDone
    supervisor → client   Accepted, Finished, CancelReply, RunsReply, ShowReply,
                          PurgeReply, StatusReply
    supervisor → worker   RunTask, RunWorkflow, StopJob, Finished (answer to a Spawn)

``Message`` is the union of these, the core protocol and nothing else. An
extension of the supervisor (the ``coda://`` broker is one) declares its own
messages on the same base, ``WireMessage``, and the supervisor's client
connections decode them too (``coda.supervisor.extension``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "MESSAGE_TAGS",
    "PROTOCOL_VERSION",
    "Accepted",
    "Await",
    "CachedStep",
    "CancelReply",
    "CancelRun",
    "Error",
    "Failure",
    "Finished",
    "Hello",
    "JobView",
    "Kind",
    "Message",
    "Payload",
    "PurgeQueue",
    "PurgeReply",
    "RunTask",
    "RunWorkflow",
    "RunsReply",
    "RunsRequest",
    "ShowReply",
    "ShowRequest",
    "Spawn",
    "Started",
    "StatusReply",
    "StatusRequest",
    "StopJob",
    "Submit",
    "TaskDone",
    "Welcome",
    "WireMessage",
    "WorkflowDone",
]

PROTOCOL_VERSION = 1

Role = Literal["client", "worker"]
Kind = Literal["task", "workflow"]


class Payload(msgspec.Struct, frozen=True, array_like=True):
    """Serialized user data: what kombu calls (content_type, encoding, body).

    ``body`` is a ``memoryview``: decoded, it is a view of the frame it came
    in, so the supervisor stores and forwards it without copying (see
    ``coda.protocol``); a new one wraps its bytes: ``memoryview(data)``.
    """

    content_type: str
    content_encoding: str
    body: memoryview

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled (and deep-copied) as bytes: a memoryview itself cannot be."""
        return (_payload, (self.content_type, self.content_encoding, bytes(self.body)))


def _payload(content_type: str, content_encoding: str, body: bytes) -> Payload:
    return Payload(content_type, content_encoding, memoryview(body))


class Failure(msgspec.Struct, frozen=True, array_like=True):
    """An exception raised by user code, flattened for the wire.

    ``retry_in`` is set by the worker when the task's or workflow's retry
    policy asks for another attempt after that many seconds; the supervisor
    applies it without knowing the policy.
    """

    type_name: str
    message: str
    traceback: str = ""
    retry_in: float | None = None


class WireMessage(msgspec.Struct, frozen=True, array_like=True, tag_field="t", omit_defaults=True):
    """The base of every message on the wire, the core's and its extensions'.

    A subclass names its tag (``class Ping(WireMessage, tag="ping", frozen=True)``);
    all of them share the tag field and the array layout, so a codec can decode
    any union of them (``coda.protocol.MessageCodec``).
    """


class Hello(WireMessage, tag="hello", frozen=True):
    version: int
    role: Role
    token: str = ""
    pid: int = 0
    worker_id: int = -1
    queues: list[str] = []
    task_slots: int = 0
    workflow_slots: int = 0


class Welcome(WireMessage, tag="welcome", frozen=True):
    version: int
    supervisor_id: str


class Error(WireMessage, tag="error", frozen=True):
    """A refusal. ``req_id`` names the request it answers, if any."""

    code: str
    message: str
    req_id: int | None = None


class Submit(WireMessage, tag="submit", frozen=True):
    """Start a task or workflow outside any workflow.

    With ``wait`` the supervisor also sends ``Finished`` when the run ends,
    saving the round trip of a separate ``Await``. ``not_before`` (wall-clock
    seconds since the epoch) holds the run back until then, as Celery's
    ``countdown``/``eta`` do.
    """

    req_id: int
    name: str
    args: Payload
    run_id: str | None = None
    queue: str | None = None
    wait: bool = False
    not_before: float | None = None


class Accepted(WireMessage, tag="accepted", frozen=True):
    req_id: int
    run_id: str
    kind: Kind = "task"


class Await(WireMessage, tag="await", frozen=True):
    """Ask for ``Finished`` once the run ends (at once if it has)."""

    req_id: int
    run_id: str


class Finished(WireMessage, tag="finished", frozen=True):
    """The end of a run, a spawned task or a child workflow."""

    req_id: int
    run_id: str
    kind: Kind = "task"
    result: Payload | None = None
    failure: Failure | None = None


class CancelRun(WireMessage, tag="cancel_run", frozen=True):
    """Cancel a run (a workflow with its children, or a task). ``terminate``
    also stops a sync task that is running, by replacing its worker process."""

    req_id: int
    run_id: str
    terminate: bool = False


class CancelReply(WireMessage, tag="cancel_reply", frozen=True):
    """``state``: ``cancelled``, or ``cancelling`` while a worker stops it."""

    req_id: int
    run_id: str
    state: str


class StatusRequest(WireMessage, tag="status", frozen=True):
    req_id: int


class StatusReply(WireMessage, tag="status_reply", frozen=True):
    req_id: int
    status: dict[str, Any]


class JobView(msgspec.Struct, frozen=True, array_like=True, omit_defaults=True):
    """A run or one of its steps, as an operator sees it (``coda runs``,
    ``coda show``, the dashboard). Times are wall-clock seconds."""

    id: str
    kind: Kind
    name: str
    state: str  # queued, delayed, running, succeeded, failed, cancelled
    queue: str
    attempt: int
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    parent_run: str | None = None
    parent_attempt: int = 0  # the attempt of its run that spawned it (a step)
    cache_key: bytes | None = None
    losses: int = 0  # times its worker died while it ran
    failure: Failure | None = None


class RunsRequest(WireMessage, tag="runs", frozen=True):
    """The most recent runs (not their steps), newest first, filtered."""

    req_id: int
    state: str | None = None
    name: str | None = None
    since: float | None = None  # created at or after (epoch seconds)
    limit: int = 50


class RunsReply(WireMessage, tag="runs_reply", frozen=True):
    req_id: int
    runs: list[JobView]


class ShowRequest(WireMessage, tag="show", frozen=True):
    """One run and every job it spawned."""

    req_id: int
    run_id: str


class ShowReply(WireMessage, tag="show_reply", frozen=True):
    req_id: int
    run: JobView
    steps: list[JobView]


class PurgeQueue(WireMessage, tag="purge_queue", frozen=True):
    """Drop every job waiting in a queue (not those running or held back
    for a retry or an ETA); each ends cancelled."""

    req_id: int
    queue: str


class PurgeReply(WireMessage, tag="purge_reply", frozen=True):
    req_id: int
    queue: str
    purged: int


class RunTask(WireMessage, tag="run_task", frozen=True):
    """``redelivered``: a worker holding this job before died (the job was
    requeued). ``requeued``: the task gave this delivery back itself
    (``TaskDone.requeue``) and gets it again."""

    job_id: str
    name: str
    args: Payload
    attempt: int
    run_id: str | None = None
    redelivered: bool = False
    requeued: bool = False


class CachedStep(msgspec.Struct, frozen=True, array_like=True):
    """A spawn of this run that already succeeded under a cache key."""

    kind: Kind
    name: str
    key: bytes
    result: Payload


class RunWorkflow(WireMessage, tag="run_workflow", frozen=True):
    """``history``: results of this run's cached spawns that already succeeded
    (a rerun's), so the worker answers those spawns without a round trip.
    It may hold only some of them (its size is bounded); the supervisor
    answers the rest."""

    run_id: str
    name: str
    args: Payload
    attempt: int
    history: list[CachedStep] = []


class Spawn(WireMessage, tag="spawn", frozen=True):
    """A running workflow asks for a task or child workflow.

    ``cache_key`` is the MessagePack encoding of the user's key list: the
    supervisor compares it as bytes and never decodes it.
    """

    req_id: int
    run_id: str
    kind: Kind
    name: str
    args: Payload
    cache_key: bytes | None = None
    queue: str | None = None


class StopJob(WireMessage, tag="stop_job", frozen=True):
    """Cancel a workflow run or an async task the worker holds (its coroutine
    gets ``CancelledError``), or drop a task it holds back; the worker then
    answers ``WorkflowDone``/``TaskDone`` as usual. A sync task that is
    running cannot be interrupted: it finishes."""

    job_id: str


class Started(WireMessage, tag="started", frozen=True):
    """The worker started a task (at once, or once a slot freed up): its
    timeout runs from here, and only now would its loss count against it."""

    job_id: str


class TaskDone(WireMessage, tag="task_done", frozen=True):
    """``retry_args``: with a ``failure`` that has ``retry_in``, the arguments of
    the next attempt (a task that re-enqueues itself with new arguments).
    ``requeue``: the task gave its delivery back (``RequeueRequested``, the
    reason in ``failure``): the supervisor runs it again, unchanged, after its
    requeue backoff."""

    job_id: str
    result: Payload | None = None
    failure: Failure | None = None
    retry_args: Payload | None = None
    requeue: bool = False


class WorkflowDone(WireMessage, tag="workflow_done", frozen=True):
    """``cache_hits``: per name, spawns answered from ``RunWorkflow.history``
    (the supervisor did not see them, but counts them in its status)."""

    run_id: str
    attempt: int
    result: Payload | None = None
    failure: Failure | None = None
    cache_hits: dict[str, int] = {}


Message = (
    Hello
    | Welcome
    | Error
    | Submit
    | Accepted
    | Await
    | Finished
    | CancelRun
    | CancelReply
    | RunsRequest
    | RunsReply
    | ShowRequest
    | ShowReply
    | PurgeQueue
    | PurgeReply
    | StatusRequest
    | StatusReply
    | RunTask
    | RunWorkflow
    | Spawn
    | StopJob
    | Started
    | TaskDone
    | WorkflowDone
)

MESSAGE_TAGS: frozenset[str] = frozenset(str(cls.__struct_config__.tag) for cls in Message.__args__)
