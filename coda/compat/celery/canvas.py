"""Celery canvases as a typed tree, parsed once from a *frozen* canvas.

Celery assigns every id when a canvas is frozen (``sig.freeze()``): leaf task
ids, group ids, and the chain's result id (its last step's). ``parse`` turns
the frozen objects into four frozen structs the Coda workflow can run and
the wire can carry (msgspec, tagged)::

    Leaf(name, task_id, args, kwargs, immutable, options)
    Chain(steps)            # nested chains spliced; "group then task" already a chord
    Group(group_id, members)  # nested groups flattened, in Celery's frozen order
    Chord(group_id, header, body)

What Celery normalises while freezing (a chain's ``_frozen`` steps, a group's
flattened members) is read from the frozen objects rather than re-derived,
so the tree has the ids and the order Celery's own results report.
``xmap``, ``xstarmap``, ``chunks``, composite-level partial arguments and
empty groups or chains are refused with ``UnsupportedCanvas``; the caller
then lets Celery run the canvas (its leaves are still routed one by one).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import msgspec
from celery.canvas import Signature, _chain, _chord, group

from coda.errors import CodaError

__all__ = [
    "Chain",
    "Chord",
    "Group",
    "Leaf",
    "Node",
    "UnsupportedCanvas",
    "decode_tree",
    "encode_tree",
    "flatten_groups",
    "leaves",
    "parse",
    "result_id",
]

# Options of a leaf that reach its message; the rest (reply_to, chord, ...)
# are Celery's bookkeeping for the broker path.
LEAF_OPTIONS = frozenset(
    {
        "queue",
        "priority",
        "headers",
        "time_limit",
        "soft_time_limit",
        "expires",
        "ignore_result",
        "serializer",
        "link",
        "link_error",
        "shadow",
        "group_index",
    }
)


class UnsupportedCanvas(CodaError):
    """This canvas shape is left to Celery."""


class Leaf(msgspec.Struct, frozen=True, tag="task"):
    name: str
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    immutable: bool = False
    options: dict[str, Any] = {}


class Chain(msgspec.Struct, frozen=True, tag="chain"):
    steps: list[Node]


class Group(msgspec.Struct, frozen=True, tag="group"):
    group_id: str
    members: list[Node]


class Chord(msgspec.Struct, frozen=True, tag="chord"):
    group_id: str
    header: list[Node]
    body: Node


Node = Leaf | Chain | Group | Chord

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Node)


def encode_tree(node: Node) -> bytes:
    return _encoder.encode(node)


def decode_tree(data: bytes) -> Node:
    node: Node = _decoder.decode(data)
    return node


def _plain(value: Any) -> Any:
    """Signature dicts and tuples as plain JSON data (they travel inside the tree)."""
    return json.loads(json.dumps(value))


def parse(sig: Any) -> Node:
    """The tree of a frozen canvas (``sig.freeze()`` must have been called)."""
    if isinstance(sig, _chain):
        return _parse_chain(sig)
    if isinstance(sig, group):
        _no_partial_args(sig)
        members = [parse(member) for member in sig.tasks]
        if not members:
            raise UnsupportedCanvas("empty group")
        return Group(group_id=str(sig.options["task_id"]), members=members)
    if isinstance(sig, _chord):
        return _parse_chord(sig)
    if type(sig) is not Signature or str(sig.task).startswith("celery."):
        raise UnsupportedCanvas(f"{sig.task} ({type(sig).__name__}) runs on Celery")
    options = {k: _plain(v) for k, v in sig.options.items() if k in LEAF_OPTIONS}
    return Leaf(
        name=str(sig.task),
        task_id=str(sig.options["task_id"]),
        args=_plain(list(sig.args)),
        kwargs=_plain(dict(sig.kwargs)),
        immutable=bool(sig.immutable),
        options=options,
    )


def flatten_groups(sig: Any) -> Any:
    """Splice groups nested in groups, in order, before freezing (in place).

    ``group.apply_async`` flattens nested groups in order, but
    ``group.freeze`` reverses each nested group (``_freeze_unroll`` pushes
    them with ``extendleft``); flattening first makes the frozen ids and
    order those ``apply_async`` really produces.
    """
    if isinstance(sig, group):
        members: list[Any] = []
        for member in sig.tasks:
            member = flatten_groups(member)
            members.extend(member.tasks if isinstance(member, group) else [member])
        sig.kwargs["tasks"] = members
    elif isinstance(sig, _chain):
        sig.kwargs["tasks"] = [flatten_groups(step) for step in sig.tasks]
    elif isinstance(sig, _chord):
        sig.kwargs["header"] = flatten_groups(sig.tasks)
        if sig.body is not None:
            sig.kwargs["body"] = flatten_groups(sig.body)
    return sig


def _parse_chain(sig: Any) -> Chain:
    _no_partial_args(sig)
    frozen = getattr(sig, "_frozen", None)
    steps = list(reversed(frozen[0])) if frozen else list(sig.tasks)
    nodes: list[Node] = []
    for step in steps:
        node = parse(step)
        nodes.extend(node.steps if isinstance(node, Chain) else [node])
    if not nodes:
        raise UnsupportedCanvas("empty chain")
    return Chain(steps=nodes)


def _parse_chord(sig: Any) -> Chord:
    _no_partial_args(sig)
    header = sig.tasks
    if not isinstance(header, group) or sig.body is None:
        raise UnsupportedCanvas("chord without a frozen header group or body")
    members = [parse(member) for member in header.tasks]
    if not members:
        raise UnsupportedCanvas("chord with an empty header")
    return Chord(group_id=str(header.options["task_id"]), header=members, body=parse(sig.body))


def _no_partial_args(sig: Any) -> None:
    partial_kwargs = sig.kwargs.get("kwargs") if isinstance(sig, _chord) else None
    if sig.args or partial_kwargs:
        raise UnsupportedCanvas("partial arguments on a chain, group or chord")


def leaves(node: Node) -> Iterator[Leaf]:
    match node:
        case Leaf():
            yield node
        case Chain(steps=children) | Group(members=children):
            for child in children:
                yield from leaves(child)
        case Chord(header=header, body=body):
            for child in header:
                yield from leaves(child)
            yield from leaves(body)


def result_id(node: Node) -> str:
    """The id whose result stands for the node (Celery's ``freeze()`` result id)."""
    match node:
        case Leaf(task_id=task_id):
            return task_id
        case Chain(steps=steps):
            return result_id(steps[-1])
        case Group(group_id=group_id):
            return group_id
        case Chord(body=body):
            return result_id(body)
    raise TypeError(node)
