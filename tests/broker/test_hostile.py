"""Any well-formed broker message, however odd its values, gets an answer or
is ignored: the broker service never raises (that would kill the connection)."""

from __future__ import annotations

import math
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.broker.control import ControlNode
from coda.broker.messages import BROKER_REQUESTS
from coda.broker.service import BrokerService
from tests.broker.fakes import FakeClock, FakeHost, FakePeer

NAMES = st.sampled_from(["", "q", "x", "celery", "amq.direct", "amq.fanout", "a.b.*", "#"])
ODD_FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([-1.0, 0.0, 0.5, 1e9])
)


def strategy(info: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(info, mi.StrType):
        return NAMES
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.IntType):
        return st.integers(-(2**40), 2**40)
    if isinstance(info, mi.FloatType):
        return ODD_FLOATS
    if isinstance(info, mi.BytesType):
        return st.binary(max_size=16)
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.ListType):
        return st.lists(strategy(info.item_type), max_size=5)
    if isinstance(info, mi.UnionType):
        return st.one_of(*(strategy(t) for t in info.types))
    if isinstance(info, mi.AnyType):
        return st.one_of(st.none(), st.booleans(), NAMES, st.lists(NAMES, max_size=3))
    if isinstance(info, mi.DictType):
        return st.dictionaries(strategy(info.key_type), strategy(info.value_type), max_size=3)
    raise AssertionError(f"no strategy for {info}")


def message(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    return st.builds(cls, **{f.name: strategy(f.type) for f in info.fields})


MESSAGES = st.one_of(*(message(cls) for cls in BROKER_REQUESTS))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 2), MESSAGES, ODD_FLOATS), max_size=30))
def test_odd_but_valid_messages_never_break_the_service(
    steps: list[tuple[int, Any, float]],
) -> None:
    clock = FakeClock()
    service = BrokerService(result_ttl=60, clock=clock)
    service.node = ControlNode(FakeHost(clock=clock), service.broker)  # type: ignore[arg-type]
    peers = [FakePeer(), FakePeer(), FakePeer()]
    for who, msg, advance in steps:
        service.handle(peers[who], msg)
        if math.isfinite(advance) and 0 <= advance < 1e6:
            clock.advance(advance)
    for peer in peers:
        service.disconnected(peer)
    assert service.statistics()["connections"] == 0
