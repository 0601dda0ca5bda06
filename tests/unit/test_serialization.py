from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import kombu.serialization
import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coda import serialization
from coda.errors import ConfigurationError, ContentDisallowedError, DecodeError, EncodeError
from coda.serialization import SerializerRegistry

JSON = "application/json"
MSGPACK = "application/x-msgpack"
PICKLE = "application/x-python-serialize"

NESTED = {
    "name": "café ☕",
    "count": 3,
    "big": 2**63,
    "ratio": -0.25,
    "flags": [True, False, None],
    "deep": {"list": [1, [2, [3, {"x": "y"}]]], "empty": {}, "none": []},
}


@pytest.fixture
def reg() -> SerializerRegistry:
    return SerializerRegistry()


def roundtrip(reg: SerializerRegistry, obj: Any, serializer: str) -> Any:
    content_type, encoding, body = reg.dumps(obj, serializer)
    assert isinstance(body, bytes)
    return reg.loads(body, content_type, encoding)


# -- built-ins --


def test_builtin_names_and_content_types(reg: SerializerRegistry) -> None:
    assert reg.dumps({}, "json")[:2] == (JSON, "utf-8")
    assert reg.dumps({}, "msgpack")[:2] == (MSGPACK, "binary")
    assert reg.dumps({}, "pickle")[:2] == (PICKLE, "binary")
    for name in ("json", "msgpack", "pickle"):
        assert reg.content_type_for(name) == kombu.serialization.registry.name_to_type[name]
        assert reg.name_for(reg.content_type_for(name)) == name
    assert reg.default_accept == {JSON, MSGPACK}


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_nested_round_trip(reg: SerializerRegistry, serializer: str) -> None:
    assert roundtrip(reg, NESTED, serializer) == NESTED


def test_tuples_come_back_as_lists_like_kombu(reg: SerializerRegistry) -> None:
    obj = {"t": (1, (2, 3))}
    assert roundtrip(reg, obj, "msgpack") == {"t": [1, [2, 3]]}
    assert roundtrip(reg, obj, "json") == {"t": [1, [2, 3]]}


def test_module_level_shortcuts_default_to_msgpack() -> None:
    assert serialization.DEFAULT_SERIALIZER == "msgpack"
    content_type, encoding, body = serialization.dumps({"a": 1})
    assert (content_type, encoding) == (MSGPACK, "binary")
    assert serialization.loads(body, content_type, encoding) == {"a": 1}
    assert set(serialization.__all__) == {
        "DEFAULT_SERIALIZER",
        "SerializerRegistry",
        "dumps",
        "loads",
        "registry",
    }


# -- json: kombu's envelopes, byte for byte --

ENVELOPED = [
    datetime(2024, 5, 17, 12, 30, 45, 123456),
    datetime(2024, 5, 17, 12, 30, tzinfo=UTC),
    datetime(2024, 5, 17, 12, 30, tzinfo=timezone(timedelta(hours=-5))),
    date(2024, 2, 29),
    time(23, 59, 58, 1),
    time(8, 0, tzinfo=UTC),
    Decimal("3.14159265358979323846"),
    Decimal("-1E+10"),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"plain utf-8 \xc3\xa9",
    b"\xff\xfe\x00 not utf-8",
    b"",
]


@pytest.mark.parametrize("value", ENVELOPED, ids=repr)
def test_json_envelopes_match_kombu(reg: SerializerRegistry, value: Any) -> None:
    obj = {"value": value, "nested": [value, {"again": value}]}
    content_type, encoding, body = reg.dumps(obj, "json")
    k_type, k_encoding, k_body = kombu.serialization.dumps(obj, "json")
    assert (content_type, encoding) == (k_type, k_encoding)
    assert body == (k_body.encode("utf-8") if isinstance(k_body, str) else k_body)
    assert reg.loads(body, content_type, encoding) == obj
    assert kombu.serialization.loads(body, k_type, k_encoding) == obj


def test_json_envelope_shapes(reg: SerializerRegistry) -> None:
    body = reg.dumps([uuid.UUID(int=1), b"\xff", Decimal("1.5")], "json")[2]
    assert json.loads(body) == [
        {"__type__": "uuid", "__value__": {"hex": "00000000000000000000000000000001"}},
        {"__type__": "base64", "__value__": "/w=="},
        {"__type__": "decimal", "__value__": "1.5"},
    ]


def test_json_honours_dunder_json_like_kombu(reg: SerializerRegistry) -> None:
    class Point:
        def __json__(self) -> dict[str, int]:
            return {"x": 1, "y": 2}

    body = reg.dumps({"p": Point()}, "json")[2]
    assert body == kombu.serialization.dumps({"p": Point()}, "json")[2].encode()
    assert reg.loads(body, JSON) == {"p": {"x": 1, "y": 2}}


def test_json_unknown_envelope_type_is_a_decode_error(reg: SerializerRegistry) -> None:
    with pytest.raises(DecodeError, match="unsupported envelope type 'frozenset'"):
        reg.loads(b'{"__type__": "frozenset", "__value__": [1]}', JSON)


def test_json_dict_with_extra_keys_is_not_an_envelope(reg: SerializerRegistry) -> None:
    obj = {"__type__": "uuid", "__value__": 1, "other": 2}
    assert roundtrip(reg, obj, "json") == obj


# -- msgpack: wire-compatible with msgpack-python --

MSGPACK_SAMPLES = [
    NESTED,
    {"bytes": b"\x00\xff", "text": "ünïcode", "float": 1.5, "neg": -(2**63)},
    [2**64 - 1, -1, 0, 127, 128, 65535, 65536],
    "just a string",
    None,
]


@pytest.mark.parametrize("obj", MSGPACK_SAMPLES, ids=range(len(MSGPACK_SAMPLES)))
def test_msgpack_matches_msgpack_python(reg: SerializerRegistry, obj: Any) -> None:
    body = reg.dumps(obj, "msgpack")[2]
    assert body == msgpack.packb(obj, use_bin_type=True)
    assert msgpack.unpackb(body, raw=False) == obj
    theirs = msgpack.packb(obj, use_bin_type=True)
    assert reg.loads(theirs, MSGPACK, "binary") == obj


def test_msgpack_reads_kombu_payloads(reg: SerializerRegistry) -> None:
    content_type, encoding, body = kombu.serialization.dumps(NESTED, "msgpack")
    assert reg.loads(body, content_type, encoding) == NESTED


def test_msgpack_accepts_buffers(reg: SerializerRegistry) -> None:
    body = reg.dumps({"a": [1, 2]}, "msgpack")[2]
    assert reg.loads(memoryview(body), MSGPACK) == {"a": [1, 2]}  # type: ignore[arg-type]


# -- errors --


class Opaque:
    pass


@pytest.mark.parametrize("serializer", ["json", "msgpack"])
def test_encode_error_names_the_nested_type(reg: SerializerRegistry, serializer: str) -> None:
    pattern = f"cannot encode object of type {__name__}.Opaque with serializer '{serializer}'"
    with pytest.raises(EncodeError, match=pattern):
        reg.dumps({"deep": [1, Opaque()]}, serializer)


def test_encode_error_for_pickle_names_the_top_type(reg: SerializerRegistry) -> None:
    with pytest.raises(EncodeError, match="type dict with serializer 'pickle'"):
        reg.dumps({"f": lambda: 1}, "pickle")


def test_msgpack_int_overflow_is_an_encode_error(reg: SerializerRegistry) -> None:
    with pytest.raises(EncodeError, match="msgpack"):
        reg.dumps([2**64], "msgpack")


def test_unknown_serializer_lists_known_ones(reg: SerializerRegistry) -> None:
    with pytest.raises(ConfigurationError, match="'nope'.*json, msgpack, pickle"):
        reg.dumps(1, "nope")
    with pytest.raises(ConfigurationError, match="'nope'"):
        reg.content_type_for("nope")
    with pytest.raises(ConfigurationError, match="'raw'"):
        reg.dumps(b"", "raw")


def test_unknown_content_type(reg: SerializerRegistry) -> None:
    with pytest.raises(DecodeError, match="'application/x-nope'.*application/json"):
        reg.loads(b"x", "application/x-nope", accept=["application/x-nope"])
    with pytest.raises(ContentDisallowedError, match="application/x-nope"):
        reg.loads(b"x", "application/x-nope")  # accept is checked before anything else
    with pytest.raises(ConfigurationError, match="application/x-nope"):
        reg.name_for("application/x-nope")


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"{not json", JSON), (b"\xc1", MSGPACK), (b"\x91\x01\x02", MSGPACK), (b"", MSGPACK)],
)
def test_garbage_is_a_decode_error(reg: SerializerRegistry, body: bytes, content_type: str) -> None:
    with pytest.raises(DecodeError, match=content_type):
        reg.loads(body, content_type)


# -- accept --


def test_pickle_refused_by_default_with_advice(reg: SerializerRegistry) -> None:
    _, _, body = reg.dumps({"a": 1}, "pickle")
    with pytest.raises(ContentDisallowedError) as caught:
        reg.loads(body, PICKLE, "binary")
    message = str(caught.value)
    assert PICKLE in message and "(pickle)" in message
    assert "application/json, application/x-msgpack" in message
    assert "enable_insecure_serializers()" in message


def test_enable_and_disable_insecure_serializers(reg: SerializerRegistry) -> None:
    _, _, body = reg.dumps({"when": date(2024, 1, 1)}, "pickle")
    reg.enable_insecure_serializers()
    assert reg.loads(body, PICKLE, "binary") == {"when": date(2024, 1, 1)}
    reg.disable_insecure_serializers()
    with pytest.raises(ContentDisallowedError):
        reg.loads(body, PICKLE, "binary")
    assert reg.default_accept == {JSON, MSGPACK}
    with pytest.raises(ConfigurationError, match="'nope'"):
        reg.enable_insecure_serializers(["nope"])
    reg.enable_insecure_serializers([PICKLE])  # a content type works too
    assert reg.loads(body, PICKLE, "binary") == {"when": date(2024, 1, 1)}


@pytest.mark.parametrize("accept", [["pickle"], [PICKLE], {"json", PICKLE}, ("pickle", "json")])
def test_accept_by_name_or_content_type(reg: SerializerRegistry, accept: Any) -> None:
    _, _, body = reg.dumps([1, 2], "pickle")
    assert reg.loads(body, PICKLE, "binary", accept=accept) == [1, 2]


def test_explicit_accept_replaces_the_default(reg: SerializerRegistry) -> None:
    content_type, encoding, body = reg.dumps([1], "json")
    with pytest.raises(ContentDisallowedError, match="accepted: application/x-msgpack"):
        reg.loads(body, content_type, encoding, accept=frozenset({MSGPACK}))
    with pytest.raises(ContentDisallowedError, match="accepted: nothing"):
        reg.loads(body, content_type, encoding, accept=())


# -- custom serializers --


def test_register_custom_serializer_with_str_output(reg: SerializerRegistry) -> None:
    reg.register(
        "upper", lambda o: str(o).upper(), lambda b: b.decode("latin-1"), "text/x-up", "latin-1"
    )
    assert reg.dumps("é", "upper") == ("text/x-up", "latin-1", "É".encode("latin-1"))
    assert reg.loads("É".encode("latin-1"), "text/x-up") == "É"  # trusted by default
    reg.unregister("upper")
    with pytest.raises(ConfigurationError, match="'upper'"):
        reg.dumps("x", "upper")
    with pytest.raises(ConfigurationError, match="'upper'"):
        reg.unregister("upper")
    assert reg.default_accept == {JSON, MSGPACK}


def test_register_untrusted_and_replace(reg: SerializerRegistry) -> None:
    reg.register("risky", repr, bytes.decode, "text/x-risky", trusted=False)
    with pytest.raises(ContentDisallowedError):
        reg.loads(b"1", "text/x-risky")
    reg.register("safe", repr, bytes.decode, "text/x-risky")  # takes the content type over
    assert reg.name_for("text/x-risky") == "safe"
    with pytest.raises(ConfigurationError):
        reg.dumps(1, "risky")


@pytest.mark.parametrize(("name", "content_type"), [("", "a/b"), ("a/b", "a/b"), ("ok", "nope")])
def test_register_validates(reg: SerializerRegistry, name: str, content_type: str) -> None:
    with pytest.raises(ConfigurationError):
        reg.register(name, repr, bytes.decode, content_type)


# -- kombu interop --

REVERSED = "application/x-coda-test-reversed"


@pytest.fixture
def kombu_reversed() -> Iterator[str]:
    """A serializer only kombu knows: json, reversed."""
    kombu.serialization.register(
        "coda-test-reversed",
        lambda obj: json.dumps(obj)[::-1],
        lambda data: json.loads(bytes(data)[::-1]),
        content_type=REVERSED,
        content_encoding="utf-8",
    )
    yield "coda-test-reversed"
    kombu.serialization.unregister("coda-test-reversed")


def test_kombu_only_serializer_through_coda(reg: SerializerRegistry, kombu_reversed: str) -> None:
    content_type, encoding, body = reg.dumps({"a": [1, 2]}, kombu_reversed)
    assert (content_type, encoding, body) == (REVERSED, "utf-8", b'}]2 ,1[ :"a"{')
    assert reg.content_type_for(kombu_reversed) == REVERSED
    assert reg.name_for(REVERSED) == kombu_reversed
    with pytest.raises(ContentDisallowedError, match=f"{REVERSED}.*{kombu_reversed}"):
        reg.loads(body, content_type, encoding)  # not accepted by default
    for accept in ([kombu_reversed], [REVERSED]):
        assert reg.loads(body, content_type, encoding, accept=accept) == {"a": [1, 2]}
    reg.enable_insecure_serializers([kombu_reversed])
    assert reg.loads(body, content_type, encoding) == {"a": [1, 2]}
    with pytest.raises(DecodeError, match="kombu"):
        reg.loads(b"{", content_type, encoding)
    with pytest.raises(EncodeError, match="type Opaque|Opaque"):
        reg.dumps(Opaque(), kombu_reversed)


def test_coda_registration_wins_over_kombu(reg: SerializerRegistry) -> None:
    # kombu's json returns str and has its own encoder; Coda's must be used.
    assert reg.dumps({"a": 1}, "json")[2] == b'{"a": 1}'
    assert serialization.registry.dumps(b"\xff", "msgpack")[2] == b"\xc4\x01\xff"


def test_core_imports_and_works_without_kombu() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["kombu"] = None  # any import of kombu now fails
        from coda import serialization as s
        from coda.errors import ConfigurationError, DecodeError
        ct, enc, body = s.dumps({"a": (1, 2)}, "json")
        assert s.loads(body, ct, enc) == {"a": [1, 2]}
        for call in (lambda: s.dumps(1, "yaml"), lambda: s.registry.content_type_for("yaml")):
            try:
                call()
            except ConfigurationError as exc:
                assert "json, msgpack, pickle" in str(exc), exc
            else:
                raise AssertionError("no error")
        try:
            s.loads(b"a: 1", "application/x-yaml", accept=["application/x-yaml"])
        except DecodeError:
            pass
        else:
            raise AssertionError("no error")
        """
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60, cwd=root)


# -- properties --

json_like = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


@given(json_like)
def test_json_like_data_round_trips(obj: Any) -> None:
    for serializer in ("json", "msgpack"):
        assert roundtrip(serialization.registry, obj, serializer) == obj
