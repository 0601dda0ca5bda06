"""The compat layer's pure parts, without processes: rollout, the message
contract, the capturing producer, canvas parsing and time-limit resolution."""

from __future__ import annotations

from typing import Any

import pytest
from celery import Celery, chain, chord, group
from kombu.exceptions import ContentDisallowed

from coda.compat.celery.canvas import (
    Chain,
    Chord,
    Group,
    Leaf,
    UnsupportedCanvas,
    decode_tree,
    encode_tree,
    flatten_groups,
    leaves,
    parse,
    result_id,
)
from coda.compat.celery.canvas_flow import StepFailed
from coda.compat.celery.limits import limits_for
from coda.compat.celery.message import ENVELOPE, CeleryMessage, parse_job_args
from coda.compat.celery.producer import MessageProducer
from coda.compat.celery.rollout import Rollout
from coda.compat.kombu.canvas_shapes import nested, tracked_ids
from coda.errors import CodaError, ConfigurationError

app = Celery("units", broker="memory://", backend="cache+memory://", set_as_current=False)


@app.task(time_limit=30, soft_time_limit=20)
def add(x: int, y: int = 0) -> int:
    return x + y


@app.task
def tsum(values: list[int]) -> int:
    return sum(values)


def captured(**options: Any) -> CeleryMessage:
    messages: list[CeleryMessage] = []
    events: list[tuple[Any, ...]] = []
    producer = MessageProducer(messages.append, lambda *event: events.append(event))
    app.send_task(add.name, (1, 2), producer=producer, **options)
    (message,) = messages
    return message


# -- rollout ---------------------------------------------------------------


def test_rollout_exact_name_beats_globs_and_globs_go_in_order() -> None:
    table = {"proj.*": 0.25, "proj.tasks.add": 1.0, "proj.tasks.*": 0.0}
    rollout = Rollout(app, table)
    assert rollout.fraction("proj.tasks.add") == 1.0
    assert rollout.fraction("proj.tasks.mul") == 0.25  # first matching pattern
    assert rollout.fraction("other.task") == 0.0


def test_rollout_draws_once_per_call_and_reads_changes() -> None:
    draws = iter([0.1, 0.9])
    table = {"t": 0.5}
    rollout = Rollout(app, table, draw=lambda: next(draws))
    assert rollout.goes_to_coda("t") is True
    assert rollout.goes_to_coda("t") is False
    table["t"] = 1.0  # no restart: the mapping is read on every call
    assert rollout.goes_to_coda("t") is True


def test_rollout_from_celery_config_and_callables() -> None:
    app.conf.coda_rollout = {"a": 1.0}
    try:
        assert Rollout(app).fraction("a") == 1.0
    finally:
        app.conf.coda_rollout = {}
    assert Rollout(app, lambda: {"b": 0.5}).fraction("b") == 0.5


@pytest.mark.parametrize("bad", [1.5, -0.1, "lots"])
def test_rollout_refuses_bad_fractions(bad: Any) -> None:
    with pytest.raises(ConfigurationError):
        Rollout(app, {"t": bad}).fraction("t")


# -- the message contract --------------------------------------------------


def test_producer_captures_celerys_own_message() -> None:
    message = captured(countdown=5, headers={"x-tenant": "a"}, priority=3, expires=60)
    assert message.name == add.name and message.task_id == message.properties["correlation_id"]
    assert message.headers["timelimit"] == [30, 20]
    assert message.headers["x-tenant"] == "a"
    assert message.eta is not None and message.expires is not None
    assert message.properties["priority"] == 3
    assert message.routing_key == "celery"
    assert message.content_type == "application/json"


def test_the_task_sent_event_is_forwarded_not_taken_for_the_task() -> None:
    """``task_send_sent_event`` publishes the event through the same producer,
    after the task: the sink must get the task, the event its own way (the
    cause of the ``self.retry()`` hang of issue 13)."""
    messages: list[CeleryMessage] = []
    events: list[tuple[Any, ...]] = []
    producer = MessageProducer(messages.append, lambda *event: events.append(event))
    app.conf.task_send_sent_event = True
    try:
        app.send_task(add.name, (1, 2), producer=producer)
    finally:
        app.conf.task_send_sent_event = False
    (message,) = messages
    assert message.name == add.name
    ((body, exchange, routing_key, _headers, _serializer),) = events
    assert (body["type"], body["uuid"], exchange, routing_key) == (
        "task-sent",
        message.task_id,
        "celeryev",
        "task.sent",
    )


def test_job_args_round_trip_into_the_tracer_request() -> None:
    message = captured(headers={"x-tenant": "a"})
    call = parse_job_args(add.name, message.to_job_args(), accept={"application/json"})
    assert (call.args, call.kwargs, call.task_id) == ([1, 2], {}, message.task_id)
    request = call.request("coda-1@host", redelivered=True)
    assert request["delivery_info"]["redelivered"] is True
    assert request["x-tenant"] == "a" and request["is_eager"] is False
    assert request["hostname"] == "coda-1@host" and request["retries"] == 0


def test_plain_kwargs_are_a_call_with_a_fresh_id() -> None:
    call = parse_job_args(add.name, {"x": 1, "y": 2}, accept=None)
    assert (call.args, call.kwargs) == ([], {"x": 1, "y": 2}) and call.task_id


def test_content_outside_accept_is_refused() -> None:
    message = captured(serializer="pickle")
    with pytest.raises(ContentDisallowed):
        parse_job_args(add.name, message.to_job_args(), accept={"application/json"})


def test_malformed_envelopes_are_refused() -> None:
    with pytest.raises(ValueError, match="malformed"):
        parse_job_args(add.name, {ENVELOPE: {"headers": {}}}, accept=None)
    message = captured()
    with pytest.raises(ValueError, match="submitted as"):
        parse_job_args("other.name", message.to_job_args(), accept=None)


def test_time_limits_header_then_task_then_config() -> None:
    assert limits_for(app, add, {"timelimit": [None, None]}) == (30.0, 20.0)
    assert limits_for(app, add, {"timelimit": [5, 2]}) == (5.0, 2.0)
    assert limits_for(app, tsum, {}) == (None, None)


# -- canvas ----------------------------------------------------------------


def frozen(sig: Any) -> Any:
    sig = flatten_groups(sig.clone())
    sig.freeze()
    return sig


def test_chain_with_group_then_task_becomes_a_chord() -> None:
    canvas = flatten_groups(chain(add.s(1, 2), group(add.s(1), add.s(2)), tsum.s()).clone())
    result = canvas.freeze()
    tree = parse(canvas)
    assert isinstance(tree, Chain) and [type(s) for s in tree.steps] == [Leaf, Chord]
    chord_node = tree.steps[1]
    assert isinstance(chord_node, Chord) and len(chord_node.header) == 2
    assert result_id(tree) == result.id  # the chain's id is its last step's
    assert decode_tree(encode_tree(tree)) == tree


def test_nested_groups_are_flattened_in_order() -> None:
    tree = parse(frozen(group(add.s(1, 1), group(add.s(2, 2), add.s(3, 3)))))
    assert isinstance(tree, Group)
    assert [leaf.args for leaf in leaves(tree)] == [[1, 1], [2, 2], [3, 3]]
    assert [leaf.options["group_index"] for leaf in leaves(tree)] == [0, 1, 2]


def test_result_ids_match_celerys_frozen_results() -> None:
    canvas = flatten_groups(chord([add.s(1, 1), add.s(2, 2)], tsum.s()).clone())
    result = canvas.freeze()
    tree = parse(canvas)
    assert isinstance(tree, Chord)
    assert result_id(tree) == result.id
    assert [result_id(m) for m in tree.header] == [r.id for r in result.parent.results]


def test_unsupported_canvases_are_left_to_celery() -> None:
    with pytest.raises(UnsupportedCanvas):
        parse(frozen(add.chunks([(1, 1)] * 4, 2)))
    with pytest.raises(UnsupportedCanvas):
        parse(frozen(group([])))


def test_the_bridges_errors_are_coda_errors() -> None:
    assert issubclass(UnsupportedCanvas, CodaError)
    assert issubclass(StepFailed, CodaError)


def test_the_result_ids_a_chained_group_or_chord_is_waited_on_by() -> None:
    steps = group(chain(add.s(1), add.s(2)), chord([add.s(3)], add.s(4)), add.s(5))
    frozen = steps.freeze()
    expected = [r.id for r in frozen.results]
    assert list(tracked_ids(dict(steps))) == expected and len(expected) == 3
    assert list(tracked_ids(dict(chord([add.s(6)], steps)))) == expected


def test_flat_chord_values_take_the_shape_of_the_header() -> None:
    header = group(add.s(1), chain(add.s(2), group(add.s(3), add.s(4)))).freeze()
    assert nested(header.results, iter([1, 3, 4])) == [1, [3, 4]]
