"""A policy document's shape checked before it is read: depth, aliases and their expansion."""

from __future__ import annotations

import yaml

from ._nodes import PolicyError, PolicyIssue, line_of

__all__ = ["check_expansion", "check_shape"]

# A hand-written policy is a few levels deep with a handful of aliases; past these bounds it is
# an attack on the loader (nesting that exhausts recursion, aliases that multiply the walk).
MAX_DEPTH = 32
MAX_ALIASES = 256
MAX_EVENTS = 200_000


def check_shape(data: bytes | str, source: str) -> None:
    """Refuse, from the event stream (iterative: no recursion), a document nested deeper than
    MAX_DEPTH, with more than MAX_ALIASES aliases or MAX_EVENTS events."""
    depth = aliases = 0
    for count, event in enumerate(yaml.parse(data, Loader=yaml.SafeLoader)):
        if count > MAX_EVENTS:
            _refuse(source, event, f"more than {MAX_EVENTS} YAML nodes")
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                _refuse(source, event, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
        elif isinstance(event, yaml.AliasEvent):
            aliases += 1
            if aliases > MAX_ALIASES:
                _refuse(source, event, f"more than {MAX_ALIASES} aliases")


def _refuse(source: str, event: yaml.Event, message: str) -> None:
    line = event.start_mark.line + 1 if event.start_mark is not None else None
    raise PolicyError([PolicyIssue(source, line, "", message)])


def check_expansion(top: yaml.Node, source: str) -> None:
    """Refuse a document whose aliases, expanded, would be more than MAX_EVENTS nodes (a
    "billion laughs": nine aliases of nine aliases...), counted without expanding anything:
    each node's expanded size once, memoized (the nesting is at most MAX_DEPTH deep)."""
    sizes: dict[int, int] = {}
    visiting: set[int] = set()

    def size(node: yaml.Node) -> int:
        known = sizes.get(id(node))
        if known is not None:
            return known
        if id(node) in visiting:  # `&a [*a]`: an alias inside the node it names
            _refuse_at(source, node, "an alias refers to a node that contains it")
        visiting.add(id(node))
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(key) + size(value) for key, value in node.value)
        sizes[id(node)] = total = min(total, MAX_EVENTS + 1)
        return total

    if size(top) > MAX_EVENTS:
        _refuse_at(source, top, f"aliases expand to more than {MAX_EVENTS} YAML nodes")


def _refuse_at(source: str, node: yaml.Node, message: str) -> None:
    raise PolicyError([PolicyIssue(source, line_of(node), "", message)])
