"""How a durable store turns a ``Job`` into bytes and back.

The whole ``Job`` rides as MessagePack in a ``body`` column (every dataclass
field but ``args``), so a field added to ``Job`` later is kept without a
migration, and rows written before it existed decode with its default.
``args`` has a column of its own, rewritten only when the job's arguments
change, not at every change of state; a finished step is written with
``NO_ARGS`` (nothing reads its arguments again).
"""

from __future__ import annotations

import dataclasses

import msgspec

from ...messages import Payload
from ..jobs import Job

__all__ = ["NO_ARGS", "decode_job", "encode_args", "encode_body", "finished_at"]

_BODY_FIELDS = tuple(f.name for f in dataclasses.fields(Job) if f.name != "args")
_encode = msgspec.msgpack.Encoder().encode

encode_args = _encode
NO_ARGS = _encode(Payload("", "", memoryview(b"")))


def encode_body(job: Job) -> bytes:
    return _encode({name: getattr(job, name) for name in _BODY_FIELDS})


def decode_job(body: bytes, args: bytes) -> Job:
    fields = msgspec.msgpack.decode(body)
    fields["args"] = msgspec.msgpack.decode(args)
    return msgspec.convert(fields, Job)


def finished_at(job: Job) -> float | None:
    """The finish time a row carries: set exactly when the job has finished
    (the engine always stamps it; a finished row must look finished)."""
    if not job.state.finished:
        return None
    return job.finished_at if job.finished_at is not None else job.created_at
