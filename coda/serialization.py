"""Serializers for task arguments and results, with kombu's names and content types.

A payload is ``(content_type, content_encoding, body)``: producers ``dumps`` with a
serializer name, consumers ``loads`` by content type once it passes ``accept``; the
supervisor forwards payloads without decoding them. Built-ins, as in kombu::

    json     application/json                utf-8   kombu's {"__type__", "__value__"} envelopes
    msgpack  application/x-msgpack           binary  msgspec; wire-compatible with msgpack-python
    pickle   application/x-python-serialize  binary  registered, not accepted by default

Names and content types Coda lacks are looked up in kombu's registry (imported on first
need, if installed); those are not accepted by default. Unlike msgpack-python, msgspec
encodes datetime, UUID, Decimal and set (as str, timestamp or list) instead of refusing.
"""

from __future__ import annotations

import base64
import functools
import importlib
import json
import pickle
import uuid
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, cast

import msgspec

from .errors import ConfigurationError, ContentDisallowedError, DecodeError, EncodeError

__all__ = ["DEFAULT_SERIALIZER", "SerializerRegistry", "dumps", "loads", "registry"]

DEFAULT_SERIALIZER = "msgpack"
PICKLE_CONTENT_TYPE = "application/x-python-serialize"
PICKLE_PROTOCOL = 4  # kombu's default, readable by any Python 3 a Celery peer may run

Encoder = Callable[[Any], bytes | str]
Decoder = Callable[[bytes], Any]
ViewDecoder = Callable[[bytes | memoryview], Any]


class _UnsupportedTypeError(TypeError):
    """Raised inside an encoder so the error can name the nested type that failed."""

    def __init__(self, obj: object, hint: str) -> None:
        self.type_name = _qualname(type(obj))
        super().__init__(hint)


def _qualname(cls: type) -> str:
    module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
    return module + cls.__qualname__


# json: kombu.utils.json's envelopes, in its order (datetime is a date, so first)

_JSON_ENCODERS: tuple[tuple[type, str, Callable[[Any], Any]], ...] = (
    (datetime, "datetime", datetime.isoformat),
    (date, "date", lambda o: o.isoformat()),
    (time, "time", lambda o: o.isoformat()),
    (Decimal, "decimal", str),
    (uuid.UUID, "uuid", lambda o: {"hex": o.hex}),
)
_JSON_DECODERS: dict[str, Callable[[Any], Any]] = {
    "datetime": datetime.fromisoformat,
    "date": lambda v: datetime.fromisoformat(v).date(),
    "time": time.fromisoformat,
    "decimal": Decimal,
    "uuid": lambda v: uuid.UUID(**v),
    "bytes": lambda v: v.encode("utf-8"),
    "base64": lambda v: base64.b64decode(v.encode("utf-8")),
}
_JSON_HINT = "not JSON; kombu's envelopes add datetime, date, time, Decimal, UUID, bytes"


def _json_default(obj: Any) -> Any:
    reducer = getattr(obj, "__json__", None)
    if reducer is not None:
        return reducer()
    for cls, marker, encode in _JSON_ENCODERS:
        if isinstance(obj, cls):
            return {"__type__": marker, "__value__": encode(obj)}
    if isinstance(obj, bytes):
        try:
            return {"__type__": "bytes", "__value__": obj.decode("utf-8")}
        except UnicodeDecodeError:
            return {"__type__": "base64", "__value__": base64.b64encode(obj).decode("utf-8")}
    raise _UnsupportedTypeError(obj, _JSON_HINT)


def _json_object_hook(obj: dict[str, Any]) -> Any:
    if len(obj) == 2 and "__type__" in obj and "__value__" in obj:
        decode = _JSON_DECODERS.get(obj["__type__"])
        if decode is None:
            raise ValueError(f"unsupported envelope type {obj['__type__']!r}")
        return decode(obj["__value__"])
    return obj


# json.dumps's defaults (ensure_ascii, ", " and ": "), so the bytes equal kombu's.
_JSON_ENCODER = json.JSONEncoder(default=_json_default)
_JSON_DECODER = json.JSONDecoder(object_hook=_json_object_hook)


def _json_loads(body: bytes | memoryview) -> Any:
    return _JSON_DECODER.decode(str(body, "utf-8"))


def _msgpack_enc_hook(obj: Any) -> Any:
    raise _UnsupportedTypeError(obj, "msgpack has no form for it")


_MSGPACK_ENCODER = msgspec.msgpack.Encoder(enc_hook=_msgpack_enc_hook)
_MSGPACK_DECODER = msgspec.msgpack.Decoder()
_pickle_dumps = functools.partial(pickle.dumps, protocol=PICKLE_PROTOCOL)
_JSON: tuple[Encoder, ViewDecoder] = (_JSON_ENCODER.encode, _json_loads)
_MSGPACK: tuple[Encoder, ViewDecoder] = (_MSGPACK_ENCODER.encode, _MSGPACK_DECODER.decode)
_PICKLE: tuple[Encoder, ViewDecoder] = (_pickle_dumps, pickle.loads)


@functools.cache
def _kombu_registry() -> Any:
    """``kombu.serialization.registry``, imported on first need; None without kombu."""
    try:
        return importlib.import_module("kombu.serialization").registry
    except ImportError:
        return None


def _kombu_table(table: str) -> dict[str, str]:
    """kombu's ``name_to_type`` or ``type_to_name``; empty without kombu."""
    return cast(dict[str, str], getattr(_kombu_registry(), table, {}))


def _to_bytes(body: bytes | str, content_encoding: str) -> bytes:
    if isinstance(body, str):
        binary = content_encoding in ("binary", "ascii-8bit")  # kombu's "not text"
        return body.encode("utf-8" if binary else content_encoding)
    return bytes(body)


@dataclass(frozen=True, slots=True)
class _Codec:
    name: str
    content_type: str
    content_encoding: str
    encoder: Encoder
    decoder: Decoder
    trusted: bool
    view_decoder: ViewDecoder | None = None  # the decoder, when it takes a memoryview too


class SerializerRegistry:
    """Serializers by name (for ``dumps``) and by content type (for ``loads``).

    Starts with json, msgpack and pickle, and accepts json and msgpack by default.
    """

    def __init__(self) -> None:
        self._by_name: dict[str, _Codec] = {}
        self._by_type: dict[str, _Codec] = {}
        self._accept: frozenset[str] = frozenset()
        # their decoders read a payload's body as it comes, a view of its frame
        self._add(_Codec("json", "application/json", "utf-8", *_JSON, True, _JSON[1]))
        msgpack = _Codec("msgpack", "application/x-msgpack", "binary", *_MSGPACK, True, _MSGPACK[1])
        self._add(msgpack)
        self._add(_Codec("pickle", PICKLE_CONTENT_TYPE, "binary", *_PICKLE, False, _PICKLE[1]))

    @property
    def default_accept(self) -> frozenset[str]:
        """The content types ``loads`` accepts when given ``accept=None``."""
        return self._accept

    def register(
        self,
        name: str,
        encoder: Encoder,
        decoder: Decoder,
        content_type: str,
        content_encoding: str = "utf-8",
        *,
        trusted: bool = True,
    ) -> None:
        """Add (or replace) a serializer; ``trusted`` puts it in the default accept set."""
        if not name or "/" in name or "/" not in content_type:
            problem = f"serializer {name!r} for {content_type!r}"
            raise ConfigurationError(f"{problem}: want a name without '/' and a 'type/subtype'")
        self._add(_Codec(name, content_type, content_encoding, encoder, decoder, trusted))

    def _add(self, codec: _Codec) -> None:
        for stale in (self._by_name.get(codec.name), self._by_type.get(codec.content_type)):
            if stale is not None:
                self._forget(stale)
        self._by_name[codec.name] = self._by_type[codec.content_type] = codec
        if codec.trusted:
            self._accept |= {codec.content_type}

    def unregister(self, name: str) -> None:
        codec = self._by_name.get(name)
        if codec is None:
            raise ConfigurationError(f"no serializer is registered under the name {name!r}")
        self._forget(codec)

    def _forget(self, codec: _Codec) -> None:
        self._by_name.pop(codec.name, None)
        self._by_type.pop(codec.content_type, None)
        self._accept -= {codec.content_type}

    def enable_insecure_serializers(self, names: Iterable[str] = ("pickle",)) -> None:
        """Accept these serializers (names or content types) by default."""
        self._accept |= {n if "/" in n else self.content_type_for(n) for n in names}

    def disable_insecure_serializers(self) -> None:
        """Accept only the trusted serializers by default again."""
        self._accept = frozenset(c.content_type for c in self._by_name.values() if c.trusted)

    def content_type_for(self, name: str) -> str:
        codec = self._by_name.get(name)
        content_type = codec.content_type if codec else _kombu_table("name_to_type").get(name)
        if content_type is None:
            raise self._unknown_name(name)
        return content_type

    def name_for(self, content_type: str) -> str:
        name = self._name_or_none(content_type)
        if name is None:
            raise ConfigurationError(f"no serializer is registered for {content_type!r}")
        return name

    def dumps(self, obj: Any, serializer: str = DEFAULT_SERIALIZER) -> tuple[str, str, bytes]:
        """Encode ``obj``: ``(content_type, content_encoding, body)``."""
        codec = self._by_name.get(serializer)
        if codec is None:
            return self._kombu_dumps(obj, serializer)
        try:
            body = codec.encoder(obj)
        except Exception as exc:
            raise _encode_error(obj, serializer, exc) from exc
        if type(body) is not bytes:
            body = _to_bytes(body, codec.content_encoding)
        return codec.content_type, codec.content_encoding, body

    def loads(
        self,
        body: bytes | memoryview,
        content_type: str,
        content_encoding: str = "utf-8",
        accept: Collection[str] | None = None,
    ) -> Any:
        """Decode a payload whose content type is in ``accept`` (names or content types)."""
        allowed = self._accept if accept is None else accept
        if content_type not in allowed and self._name_or_none(content_type) not in allowed:
            raise self._disallowed(content_type, allowed)
        codec = self._by_type.get(content_type)
        if codec is None:
            return self._kombu_loads(bytes(body), content_type, content_encoding)
        try:
            if codec.view_decoder is not None:
                return codec.view_decoder(body)
            return codec.decoder(bytes(body))  # a user's decoder may want bytes
        except Exception as exc:
            message = f"cannot decode {content_type!r} with serializer {codec.name!r}: {exc}"
            raise DecodeError(message) from exc

    def _kombu_dumps(self, obj: Any, serializer: str) -> tuple[str, str, bytes]:
        if serializer not in _kombu_table("name_to_type"):
            raise self._unknown_name(serializer)
        try:
            content_type, content_encoding, body = _kombu_registry().dumps(obj, serializer)
        except Exception as exc:
            raise _encode_error(obj, serializer, exc) from exc
        return content_type, content_encoding, _to_bytes(body, content_encoding)

    def _kombu_loads(self, body: bytes, content_type: str, content_encoding: str) -> Any:
        if content_type not in _kombu_table("type_to_name"):
            known = ", ".join(sorted({*self._by_type, *_kombu_table("type_to_name")}))
            raise DecodeError(f"no serializer is registered for {content_type!r}; known: {known}")
        try:  # Coda has checked accept; kombu's own check must not refuse it again
            kombu = _kombu_registry()
            return kombu.loads(body, content_type, content_encoding, accept={content_type})
        except Exception as exc:
            message = f"cannot decode {content_type!r} with kombu's serializer: {exc}"
            raise DecodeError(message) from exc

    def _name_or_none(self, content_type: str) -> str | None:
        codec = self._by_type.get(content_type)
        return codec.name if codec else _kombu_table("type_to_name").get(content_type)

    def _unknown_name(self, name: str) -> ConfigurationError:
        known = ", ".join(sorted({*self._by_name, *_kombu_table("name_to_type")}))
        return ConfigurationError(f"unknown serializer {name!r}; known serializers: {known}")

    def _disallowed(self, content_type: str, accept: Collection[str]) -> ContentDisallowedError:
        name = self._name_or_none(content_type)
        label = f"{content_type!r} ({name})" if name else repr(content_type)
        accepted = ", ".join(sorted(accept)) or "nothing"
        message = f"refusing to decode content of type {label}; accepted: {accepted}"
        if content_type == PICKLE_CONTENT_TYPE:
            message += (
                ". pickle runs code while decoding; if every producer is trusted, call"
                " registry.enable_insecure_serializers() or pass accept=[..., 'pickle']"
            )
        return ContentDisallowedError(message)


def _encode_error(obj: Any, serializer: str, exc: Exception) -> EncodeError:
    failed = exc.type_name if isinstance(exc, _UnsupportedTypeError) else _qualname(type(obj))
    message = f"cannot encode object of type {failed} with serializer {serializer!r}: {exc}"
    return EncodeError(message)


registry = SerializerRegistry()
dumps = registry.dumps
loads = registry.loads
