"""Fuzzing the wire, with a fixed budget (bigger with ``--run-slow``).

Three layers, each fed what a hostile peer could send:

- ``FrameDecoder`` + ``MessageCodec.decode`` (the core's messages and the
  broker's) on arbitrary bytes, on mutated valid frames and on near-valid
  MessagePack: only ``ProtocolError`` subclasses may come out, and a length
  prefix above the limit is refused without allocating the announced body.
- A real ``SupervisorConnection`` (real engine, memory store, no worker
  processes) on a fake transport, fed random streams: ``data_received`` never
  raises and nothing reaches the event loop's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import tracemalloc
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
import msgspec.inspect
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.broker.messages import BROKER_REPLIES, BROKER_REQUESTS
from coda.errors import FrameTooLargeError, ProtocolError
from coda.messages import (
    PROTOCOL_VERSION,
    Accepted,
    Await,
    Error,
    Failure,
    Finished,
    Hello,
    Payload,
    RunTask,
    RunWorkflow,
    Spawn,
    StatusReply,
    StatusRequest,
    Submit,
    TaskDone,
    Welcome,
    WireMessage,
    WorkflowDone,
)
from coda.protocol import CORE_CODEC, FrameDecoder, check_hello, encode_message
from coda.supervisor import Supervisor, SupervisorConfig
from coda.supervisor.server import SupervisorConnection
from tests.unit.fake_transport import FakeTransport

EXAMPLES = 300
SLOW_EXAMPLES = 5000
pytestmark = pytest.mark.timeout(900)  # the --run-slow budget takes minutes


@pytest.fixture
def budget(request: pytest.FixtureRequest) -> int:
    return SLOW_EXAMPLES if request.config.getoption("--run-slow") else EXAMPLES


def fuzz(budget: int, *strategies: st.SearchStrategy[Any]) -> Callable[[Any], Any]:
    """``@given`` with this test's budget; no deadline (CI machines are shared)."""

    def wrap(fn: Any) -> Any:
        return settings(
            max_examples=budget,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )(given(*strategies)(fn))

    return wrap


# -- strategies --------------------------------------------------------------

NAMES = st.sampled_from(
    ["tests.apps.basic.add", "tests.apps.basic.fan_out", "tests.apps.basic.noop", "", "x" * 300]
) | st.text(max_size=40)
IDS = st.sampled_from(["run-a", "run-b", "0" * 32]) | st.text(max_size=40)
PAYLOADS = st.builds(
    Payload,
    content_type=st.sampled_from(
        ["application/x-msgpack", "application/json", "application/x-python-serialize"]
    )
    | st.text(max_size=20),
    content_encoding=st.sampled_from(["binary", "utf-8"]),
    body=st.sampled_from([b"\x80", b'{"x": 1, "y": 2}', b"{}", b"\x81\xa1x\x01"])
    | st.binary(max_size=64),
)
INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
REQ_IDS = INTS
FAILURES = st.builds(
    Failure,
    type_name=st.text(max_size=20),
    message=st.text(max_size=20),
    retry_in=st.none() | st.floats(allow_nan=True, allow_infinity=True),
)

# everything a supervisor with its broker extension sends or accepts
WIRE_CODEC = CORE_CODEC.extended((*BROKER_REQUESTS, *BROKER_REPLIES))
MESSAGE_TYPES: tuple[type[Any], ...] = WIRE_CODEC.types


SCALARS: dict[type[msgspec.inspect.Type], st.SearchStrategy[Any]] = {
    msgspec.inspect.IntType: INTS,
    msgspec.inspect.FloatType: st.floats(),
    msgspec.inspect.StrType: st.text(max_size=20),
    msgspec.inspect.BytesType: st.binary(max_size=32),
    msgspec.inspect.MemoryViewType: st.binary(max_size=32).map(memoryview),
    msgspec.inspect.BoolType: st.booleans(),
    msgspec.inspect.NoneType: st.none(),
}


def from_type_info(info: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type, bounded so that they can be encoded."""
    mi = msgspec.inspect
    scalar = SCALARS.get(type(info))
    if scalar is not None:
        return scalar
    match info:
        case mi.LiteralType(values=values):
            return st.sampled_from(values)
        case mi.UnionType(types=types):
            return st.one_of(*(from_type_info(t) for t in types))
        case mi.ListType(item_type=item):
            return st.lists(from_type_info(item), max_size=3)
        case mi.DictType(key_type=key, value_type=value):
            return st.dictionaries(from_type_info(key), from_type_info(value), max_size=3)
        case mi.StructType(cls=cls, fields=fields):
            return st.builds(cls, **{f.name: from_type_info(f.type) for f in fields})
        case mi.AnyType():
            return st.none() | st.integers(-(2**31), 2**31) | st.text(max_size=10)
    raise TypeError(f"no strategy for {info!r}")


MESSAGES: st.SearchStrategy[WireMessage] = st.one_of(
    st.builds(
        Submit,
        req_id=REQ_IDS,
        name=NAMES,
        args=PAYLOADS,
        run_id=st.none() | IDS,
        queue=st.none() | st.sampled_from(["default", "special"]) | st.text(max_size=10),
        wait=st.booleans(),
    ),
    st.builds(Await, req_id=REQ_IDS, run_id=IDS),
    st.builds(StatusRequest, req_id=REQ_IDS),
    st.builds(
        Spawn,
        req_id=REQ_IDS,
        run_id=IDS,
        kind=st.sampled_from(["task", "workflow"]),
        name=NAMES,
        args=PAYLOADS,
        cache_key=st.none() | st.binary(max_size=16),
    ),
    st.builds(TaskDone, job_id=IDS, result=st.none() | PAYLOADS, failure=st.none() | FAILURES),
    st.builds(
        WorkflowDone,
        run_id=IDS,
        attempt=INTS,
        result=st.none() | PAYLOADS,
        failure=st.none() | FAILURES,
    ),
    st.builds(
        Hello,
        version=INTS,
        role=st.sampled_from(["client", "worker"]),
        token=st.text(max_size=10),
        task_slots=INTS,
        workflow_slots=INTS,
    ),
    st.builds(Welcome, version=INTS, supervisor_id=st.text(max_size=10)),
    st.builds(Error, code=st.text(max_size=10), message=st.text(max_size=20)),
    st.builds(Accepted, req_id=REQ_IDS, run_id=IDS),
    st.builds(Finished, req_id=REQ_IDS, run_id=IDS, failure=st.none() | FAILURES),
    st.builds(
        StatusReply, req_id=REQ_IDS, status=st.dictionaries(st.text(max_size=8), INTS, max_size=4)
    ),
    st.builds(RunTask, job_id=IDS, name=NAMES, args=PAYLOADS, attempt=INTS),
    st.builds(RunWorkflow, run_id=IDS, name=NAMES, args=PAYLOADS, attempt=INTS),
    # every message type (the broker's among them), from its field types
    *(from_type_info(msgspec.inspect.type_info(cls)) for cls in MESSAGE_TYPES),
)

MSGPACK_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
TAGS = st.sampled_from(sorted(WIRE_CODEC.tags))
NEAR_VALID = st.tuples(TAGS, st.lists(MSGPACK_VALUES, max_size=8)).map(
    lambda t: msgspec.msgpack.encode([t[0], *t[1]])
)


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    """A valid byte string with bytes flipped, replaced, inserted, removed or cut."""
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        at = draw(st.integers(min_value=0, max_value=max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(min_value=0, max_value=7))
        elif op == "set" and data:
            data[at] = draw(st.sampled_from([0x00, 0xFF, 0xC1, 0x7F, 0x80, 0xDC, 0xDD, 0xCF]))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
        elif op == "truncate":
            del data[at:]
        elif op == "dup":
            data[at:at] = data[at : at + draw(st.integers(min_value=1, max_value=16))]
    return bytes(data)


FRAMES = MESSAGES.map(encode_message)


def chunked(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    start = 0
    for cut in sorted(c % (len(data) + 1) for c in cuts):
        yield data[start:cut]
        start = cut
    yield data[start:]


def decode_stream(chunks: Iterator[bytes], limit: int) -> int:
    """Feed a stream; decode every frame. Returns how many messages decoded.
    Any exception other than a ProtocolError fails the test."""
    decoder = FrameDecoder(limit=limit)
    decoded = 0
    fed = 0
    for chunk in chunks:
        fed += len(chunk)
        try:
            frames = decoder.feed(chunk)
        except FrameTooLargeError:
            assert decoder.buffered <= fed
            return decoded
        assert decoder.buffered <= fed
        for frame in frames:
            assert len(frame) <= limit
            try:
                message = WIRE_CODEC.decode(frame)
            except ProtocolError:
                continue
            decoded += 1
            # compared as bytes: a NaN float field makes the message unequal to itself
            encoded = encode_message(message)
            assert encode_message(WIRE_CODEC.decode(encoded[4:])) == encoded
            with contextlib.suppress(ProtocolError):
                check_hello(message, "client")
    return decoded


# -- the decoder and message validation ----------------------------------------


def test_arbitrary_bytes(budget: int) -> None:
    @fuzz(budget, st.binary(max_size=512), st.lists(st.integers(min_value=0), max_size=8))
    def check(data: bytes, cuts: list[int]) -> None:
        decode_stream(chunked(data, cuts), limit=256)

    check()


def test_mutated_valid_frames(budget: int) -> None:
    stream = st.lists(FRAMES, min_size=1, max_size=4).map(b"".join)

    @fuzz(budget, mutated(stream), st.lists(st.integers(min_value=0), max_size=4))
    def check(data: bytes, cuts: list[int]) -> None:
        decode_stream(chunked(data, cuts), limit=4096)

    check()


def test_mutated_bodies_and_near_valid_messages(budget: int) -> None:
    @fuzz(budget, mutated(MESSAGES.map(lambda m: encode_message(m)[4:])) | NEAR_VALID)
    def check(body: bytes) -> None:
        frame = struct.pack(">I", len(body)) + body
        decode_stream(iter([frame]), limit=len(body) + 1)

    check()


def test_oversized_prefix_is_refused_before_allocating(budget: int) -> None:
    @fuzz(
        budget,
        st.integers(min_value=1, max_value=1 << 20),
        st.data(),
        st.binary(max_size=64),
    )
    def check(limit: int, data: st.DataObject, tail: bytes) -> None:
        length = data.draw(st.integers(min_value=limit + 1, max_value=2**32 - 1))
        decoder = FrameDecoder(limit=limit)
        header = struct.pack(">I", length)
        for byte in header[:-1]:
            assert decoder.feed(bytes([byte])) == []
        with pytest.raises(FrameTooLargeError):
            decoder.feed(header[-1:] + tail)
        assert decoder.buffered == len(header) + len(tail)  # only what was sent

    check()


def test_no_allocation_follows_a_length_prefix() -> None:
    """A 4 GiB announcement, refused or within the limit, allocates nothing."""
    tracemalloc.start()
    try:
        refused = FrameDecoder(limit=64 * 1024 * 1024)
        with pytest.raises(FrameTooLargeError):
            refused.feed(struct.pack(">I", 2**32 - 1))
        waiting = FrameDecoder(limit=2**32 - 1)
        assert waiting.feed(struct.pack(">I", 2**32 - 2) + b"abc") == []
        assert waiting.buffered == 7
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


# -- a live SupervisorConnection on a fake transport -----------------------------


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def supervisor() -> Supervisor:
    config = SupervisorConfig(
        modules=("tests.apps.basic",), workers=0, listen="127.0.0.1:0", store="memory://"
    )
    return Supervisor(config)


def feed_connection(
    loop: asyncio.AbstractEventLoop, supervisor: Supervisor, worker_id: int | None, stream: bytes
) -> bytes:
    """Run one connection over ``stream``; fail on any escaped exception."""
    escaped: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: escaped.append(context))

    async def drive() -> bytes:
        conn = SupervisorConnection(supervisor, worker_id)
        transport = FakeTransport()
        conn.connection_made(transport)
        for start in range(0, len(stream), 97):
            if transport.closing:
                break
            conn.data_received(stream[start : start + 97])
            await asyncio.sleep(0)
        for _ in range(3):
            await asyncio.sleep(0)
        conn.connection_lost(None)
        await asyncio.sleep(0)
        return bytes(transport.written)

    written = loop.run_until_complete(drive())
    assert not escaped, escaped
    # whatever the supervisor answered is itself a valid stream
    for frame in FrameDecoder().feed(written):
        WIRE_CODEC.decode(frame)
    return written


def test_supervisor_connection_survives_hostile_clients(
    budget: int, loop: asyncio.AbstractEventLoop, supervisor: Supervisor
) -> None:
    hello = encode_message(Hello(version=PROTOCOL_VERSION, role="client"))
    frame = FRAMES | mutated(FRAMES) | NEAR_VALID.map(lambda b: struct.pack(">I", len(b)) + b)

    @fuzz(budget, st.booleans(), st.lists(frame, max_size=8))
    def check(greet: bool, frames: list[bytes]) -> None:
        feed_connection(loop, supervisor, None, (hello if greet else b"") + b"".join(frames))

    check()


def test_supervisor_connection_survives_a_confused_worker(
    budget: int, loop: asyncio.AbstractEventLoop, supervisor: Supervisor
) -> None:
    hello = encode_message(Hello(version=PROTOCOL_VERSION, role="worker", task_slots=1))

    @fuzz(budget, st.lists(FRAMES | mutated(FRAMES), max_size=8))
    def check(frames: list[bytes]) -> None:
        feed_connection(loop, supervisor, 10_000, hello + b"".join(frames))

    check()
