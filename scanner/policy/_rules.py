"""A policy's collections and rules, read from their YAML nodes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import yaml

from ..report import Severity
from ._nodes import INT, STR, NodeReader, line_of, part, shown
from .model import DEFAULT_RULE_NAME, Collection, Effect, Rule
from .wildcards import PatternError, Shape, compile_field, parse_pattern

__all__ = ["EFFECTS", "FIELDS", "SEVERITIES", "parse_severity", "read_collection", "read_rule"]

FIELDS = ("hosts", "images", "containers", "labels")
EFFECTS = ", ".join(effect.value for effect in Effect)
SEVERITIES = ", ".join(str(severity) for severity in Severity)


def parse_severity(text: str) -> Severity:
    if text != text.lower():
        raise ValueError(text)
    return Severity[text.upper()]


def read_collection(reader: NodeReader, node: yaml.Node, field: str) -> Collection | None:
    keys = reader.mapping(node, field, ("name", *FIELDS), ("name",))
    if keys is None:
        return None
    name = reader.string(keys["name"][1], f"{field}.name") if "name" in keys else None
    values: dict[str, tuple[str, ...]] = {}
    for key in FIELDS:
        if key not in keys:
            continue
        where = f"{field}.{key}"
        good = True
        patterns: list[str] = []
        for index, (item, text) in enumerate(reader.strings(keys[key][1], where)):
            try:
                pattern = parse_pattern(text)
            except PatternError as error:
                reader.error(item, f"{where}[{index}]", str(error))
                good = False
                continue
            if key == "labels" and pattern.shape is Shape.EXACT and "=" not in text:
                reader.error(
                    item, f"{where}[{index}]", f"{shown(text)}: a label pattern is key=value"
                )
                good = False
                continue
            patterns.append(text)
        if good:
            try:
                compile_field(patterns)
            except PatternError as error:
                reader.error(keys[key][1], where, str(error))
        values[key] = tuple(patterns)
    if name is None:
        return None
    return Collection(name=name, line=line_of(node), **values)


def read_rule(
    reader: NodeReader,
    node: yaml.Node,
    field: str,
    collections: dict[str, Collection],
    known_checks: frozenset[str],
    custom_ids: Sequence[str],
) -> Rule | None:
    allowed = ("name", "collections", "enabled", "effects", "severity")
    keys = reader.mapping(node, field, allowed, ("name", "effects"))
    if keys is None:
        return None
    name = reader.string(keys["name"][1], f"{field}.name") if "name" in keys else None
    if name == DEFAULT_RULE_NAME:
        reader.error(
            keys["name"][1], f"{field}.name", f"'{DEFAULT_RULE_NAME}' is the built-in last rule"
        )
        name = None
    scope: list[str] = []
    if "collections" in keys:
        for index, (item, text) in enumerate(
            reader.strings(keys["collections"][1], f"{field}.collections")
        ):
            if text not in collections:
                known = ", ".join(map(shown, collections)) or "none declared"
                reader.error(
                    item,
                    f"{field}.collections[{index}]",
                    f"unknown collection {shown(text)} (known: {known})",
                )
            else:
                scope.append(text)
    enabled = True
    if "enabled" in keys:
        enabled = reader.boolean(keys["enabled"][1], f"{field}.enabled") is not False
    effects = _per_check(
        reader,
        keys.get("effects"),
        f"{field}.effects",
        "effect",
        Effect,
        EFFECTS,
        known_checks,
        custom_ids,
    )
    if "effects" in keys and effects is not None and not effects:
        reader.error(keys["effects"][1], f"{field}.effects", "names no check")
    severities = _per_check(
        reader,
        keys.get("severity"),
        f"{field}.severity",
        "severity",
        parse_severity,
        SEVERITIES,
        known_checks,
        custom_ids,
    )
    if effects is not None and severities:
        for check, key_node in _keys(keys["severity"][1]).items():
            if check in severities and check != "*" and check not in effects and "*" not in effects:
                reader.error(
                    key_node,
                    f"{field}.severity.{check}",
                    f"this rule does not decide check {check} (name it in effects, or '*')",
                )
    if name is None or effects is None or severities is None:
        return None
    return Rule(
        name=name,
        collections=tuple(scope),
        effects=MappingProxyType(effects),  # the records are frozen: so are their mappings
        severities=MappingProxyType(severities),
        enabled=enabled,
        line=line_of(node),
    )


def _keys(node: yaml.Node) -> dict[str, yaml.Node]:
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {k.value: k for k, _ in node.value if isinstance(k, yaml.ScalarNode)}


def _per_check(
    reader: NodeReader,
    entry: tuple[yaml.Node, yaml.Node] | None,
    field: str,
    kind: str,
    parse: Callable[[str], Any],
    options: str,
    known_checks: frozenset[str],
    custom_ids: Sequence[str],
) -> dict[str, Any] | None:
    """{check id or "*": value} of an effects/severity mapping; None when it is unusable."""
    if entry is None:
        return {}
    keys = reader.mapping(entry[1], field, None)
    if keys is None:
        return None
    out: dict[str, Any] = {}
    usable = True
    for check, (key_node, value_node) in keys.items():
        where = f"{field}.{part(check)}"
        if check != "*" and (key_node.tag not in (INT, STR) or check not in known_checks):
            builtin = ", ".join(sorted(known_checks - set(custom_ids)))
            custom = ", ".join(custom_ids) or "none declared"
            reader.error(
                key_node,
                where,
                f"unknown check id {shown(check)} (built-in: {builtin}; custom: {custom}; or '*')",
            )
            usable = False
            continue
        value = reader.choice(value_node, where, kind, parse, options)
        if value is None:
            usable = False
            continue
        out[check] = value
    return out if usable else None
