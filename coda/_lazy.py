"""Large results a workflow may only pass along, decoded when first used.

A workflow often hands a step's result to the next step untouched (Sentry's
ingest passes the event from preprocess to process to save). Decoding a 50 KB
MessagePack event into dicts and strings costs a few hundred microseconds,
and encoding it again as the next step's argument a hundred more, for a
value the workflow never looks at. So a large dict or list result in
MessagePack reaches the workflow as a ``LazyValue``: a stand-in that decodes
the payload the first time it is used in any way (an item read, a method
called, ``isinstance``, ``repr``...) and from then on forwards everything to
the decoded value. One that was never used and is passed as an argument (or
returned) in MessagePack is sent as the bytes it came in, with neither
decoding nor encoding.

What it cannot do is be the exact type: ``type(value) is dict`` is False
(``isinstance`` works), and C code that requires a real dict or list (the
standard ``json`` module, ``msgspec`` called directly) refuses it; Coda's
own serializers take it. ``coda.context.materialize(value)`` gives the
decoded value itself. Small results, other content types, and values that
are not containers are decoded at once, as before.
"""

from __future__ import annotations

import copy
import operator
from collections.abc import Callable
from typing import Any

import msgspec

from .messages import Payload

__all__ = ["LAZY_MIN_BYTES", "LazyValue", "materialize", "maybe_lazy", "raw_or_value"]

LAZY_MIN_BYTES = 16 * 1024  # below this, decoding is cheap: do it at once
MSGPACK = "application/x-msgpack"
_NOT_YET = object()

Decoder = Callable[[Payload], Any]


def _is_container(first: int) -> bool:
    """A MessagePack map or array, by its first byte."""
    return 0x80 <= first <= 0x9F or first in (0xDC, 0xDD, 0xDE, 0xDF)


def maybe_lazy(payload: Payload, decode: Decoder) -> Any:
    """The payload's value: a ``LazyValue`` for a large MessagePack map or
    array, else decoded now."""
    body = payload.body
    if payload.content_type == MSGPACK and len(body) >= LAZY_MIN_BYTES and _is_container(body[0]):
        return LazyValue(payload, decode)
    return decode(payload)


def materialize(value: Any) -> Any:
    """The decoded value behind a ``LazyValue``; any other value as it is."""
    return value._value_() if type(value) is LazyValue else value


def raw_or_value(value: LazyValue, content_type: str) -> Any:
    """For an encoder: the original bytes (as ``msgspec.Raw``) if the value
    was never used and is being encoded in its own content type; else the
    decoded value, to encode as usual."""
    payload = object.__getattribute__(value, "_payload")
    if payload is not None and payload.content_type == content_type:
        return msgspec.Raw(payload.body)
    return value._value_()


class LazyValue:
    """A result decoded on first use; see the module docstring."""

    __slots__ = ("_decode", "_payload", "_value")

    def __init__(self, payload: Payload, decode: Decoder) -> None:
        object.__setattr__(self, "_payload", payload)
        object.__setattr__(self, "_decode", decode)
        object.__setattr__(self, "_value", _NOT_YET)

    def _value_(self) -> Any:
        value = object.__getattribute__(self, "_value")
        if value is _NOT_YET:
            payload = object.__getattribute__(self, "_payload")
            value = object.__getattribute__(self, "_decode")(payload)
            object.__setattr__(self, "_value", value)
            object.__setattr__(self, "_payload", None)  # used: its bytes may be stale now
        return value

    @property  # type: ignore[misc]  # isinstance() sees the decoded value's class
    def __class__(self) -> type:
        return type(self._value_())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._value_(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._value_(), name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self._value_(), name)

    def __dir__(self) -> list[str]:
        return dir(self._value_())

    def __copy__(self) -> Any:
        return copy.copy(self._value_())

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        return copy.deepcopy(self._value_(), memo)

    def __reduce_ex__(self, protocol: Any) -> Any:  # pickled as the value itself
        return (_itself, (self._value_(),))


def _itself(value: Any) -> Any:
    return value


def _unary(operation: Callable[[Any], Any]) -> Callable[[LazyValue], Any]:
    def forward(self: LazyValue) -> Any:
        return operation(self._value_())

    return forward


def _binary(operation: Callable[[Any, Any], Any]) -> Callable[[LazyValue, Any], Any]:
    def forward(self: LazyValue, other: Any) -> Any:
        return operation(self._value_(), other)

    return forward


def _reflected(operation: Callable[[Any, Any], Any]) -> Callable[[LazyValue, Any], Any]:
    def forward(self: LazyValue, other: Any) -> Any:
        return operation(other, self._value_())

    return forward


# Special methods are looked up on the type, never through __getattr__: each
# one a dict or a list answers is forwarded, as the operation itself.
_UNARY: dict[str, Callable[[Any], Any]] = {
    "__iter__": iter,
    "__reversed__": reversed,
    "__len__": len,
    "__hash__": hash,
    "__bool__": bool,
    "__repr__": repr,
    "__str__": str,
}
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "__getitem__": operator.getitem,
    "__delitem__": operator.delitem,
    "__contains__": operator.contains,
    "__eq__": operator.eq,
    "__ne__": operator.ne,
    "__lt__": operator.lt,
    "__le__": operator.le,
    "__gt__": operator.gt,
    "__ge__": operator.ge,
    "__format__": format,
    "__add__": operator.add,
    "__iadd__": operator.iadd,
    "__mul__": operator.mul,
    "__imul__": operator.imul,
    "__or__": operator.or_,
    "__ior__": operator.ior,
}
_REFLECTED: dict[str, Callable[[Any, Any], Any]] = {
    "__radd__": operator.add,
    "__rmul__": operator.mul,
    "__ror__": operator.or_,
}
for _name, _one in _UNARY.items():
    setattr(LazyValue, _name, _unary(_one))
for _name, _two in _BINARY.items():
    setattr(LazyValue, _name, _binary(_two))
for _name, _two in _REFLECTED.items():
    setattr(LazyValue, _name, _reflected(_two))


def _setitem(self: LazyValue, key: Any, value: Any) -> None:
    self._value_()[key] = value


setattr(LazyValue, "__setitem__", _setitem)  # noqa: B010 - beside its siblings
