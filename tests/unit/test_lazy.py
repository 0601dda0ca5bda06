"""Large results a workflow only passes along are neither decoded nor re-encoded.

``coda._lazy``: a large MessagePack map or array result is a ``LazyValue``,
decoded on first use; sent on unused, it is the bytes it came in.
"""

from __future__ import annotations

import copy
import pickle
from typing import Any

import msgspec
import pytest

from coda import context
from coda._lazy import LAZY_MIN_BYTES, LazyValue, maybe_lazy
from coda._outcome import decode_payload, encode_value
from coda.messages import Payload

EVENT = {"event_id": "e1", "frames": [{"lineno": i, "line": "x" * 40} for i in range(600)]}


class Counting:
    """A decoder that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, payload: Payload) -> Any:
        self.calls += 1
        return decode_payload(payload)


def lazy(value: object = EVENT, serializer: str = "msgpack") -> tuple[Any, Counting, Payload]:
    payload = encode_value(value, serializer)
    decode = Counting()
    return maybe_lazy(payload, decode), decode, payload


def test_a_large_msgpack_map_or_array_is_decoded_when_first_used() -> None:
    value, decode, _ = lazy()
    assert type(value) is LazyValue and decode.calls == 0
    assert value["event_id"] == "e1" and decode.calls == 1
    assert len(value["frames"]) == 600 and decode.calls == 1  # once
    listed, _, _ = lazy(EVENT["frames"])
    assert type(listed) is LazyValue and listed[3]["lineno"] == 3


@pytest.mark.parametrize(
    "value, serializer",
    [({"small": 1}, "msgpack"), (EVENT, "json"), ("x" * 2 * LAZY_MIN_BYTES, "msgpack")],
)
def test_small_results_other_content_types_and_scalars_are_decoded_at_once(
    value: object, serializer: str
) -> None:
    decoded, decode, _ = lazy(value, serializer)
    assert type(decoded) is type(value) and decoded == value and decode.calls == 1


def test_an_unused_value_passed_on_is_sent_as_the_bytes_it_came_in() -> None:
    value, decode, payload = lazy()
    sent = encode_value({"event": value, "nested": [value]}, "msgpack")
    assert decode.calls == 0
    raw = msgspec.msgpack.decode(sent.body, type=dict[str, msgspec.Raw])
    assert bytes(raw["event"]) == bytes(payload.body)
    assert decode_payload(sent) == {"event": EVENT, "nested": [EVENT]}
    returned = encode_value(value, "msgpack")  # a workflow returning it as it came
    assert bytes(returned.body) == bytes(payload.body) and decode.calls == 0


def test_a_value_changed_in_place_is_sent_as_changed() -> None:
    value, _, _ = lazy()
    value["frames"][0]["lineno"] = -1  # nested: the stand-in cannot see it happen
    value["seen"] = True
    sent = decode_payload(encode_value({"event": value}, "msgpack"))
    assert sent["event"]["frames"][0]["lineno"] == -1 and sent["event"]["seen"] is True


def test_json_and_pickle_serializers_take_it_as_its_value() -> None:
    value, _, _ = lazy()
    assert decode_payload(encode_value({"event": value}, "json")) == {"event": EVENT}
    assert pickle.loads(pickle.dumps(value)) == EVENT


def test_it_behaves_as_its_value() -> None:
    value, _, _ = lazy()
    assert isinstance(value, dict) and value == EVENT and EVENT == value  # noqa: SIM300 - both sides
    assert dict(value) == EVENT and {**value} == EVENT and "frames" in value
    assert list(value) == list(EVENT) and value.get("missing", 7) == 7
    assert copy.deepcopy(value) == EVENT and copy.deepcopy(value) is not EVENT
    assert repr(value) == repr(EVENT) and bool(value)
    frames, _, _ = lazy(EVENT["frames"])
    assert [0] + frames == [0, *EVENT["frames"]]  # noqa: RUF005 - the operators themselves
    assert len(frames + [1]) == 601  # noqa: RUF005
    with pytest.raises(TypeError):
        hash(value)


def test_materialize_gives_the_decoded_value_itself() -> None:
    value, _, _ = lazy()
    real = context.materialize(value)
    assert type(real) is dict and real == EVENT
    assert context.materialize(real) is real and context.materialize(3) == 3
