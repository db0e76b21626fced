"""The Defend page's edits, made on the policy document (today's YAML schema, docs/policy.md)
and dumped back to YAML; the result is validated by the scanner's loader when it is saved.

Edits work on the document as `yaml.safe_load` reads a stored (so validated, so bounded)
version; comments of a hand-written policy do not survive an edit made on the page.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from scanner.policy import Effect

from .models import NAME_LENGTH

__all__ = [
    "MAX_SCRIPT_BYTES",
    "Direction",
    "EditError",
    "add_collection",
    "add_custom_check",
    "add_rule",
    "delete_rule",
    "dump",
    "edit_rule",
    "load_document",
    "move_rule",
    "parse_checks",
    "parse_effects",
    "parse_hosts",
    "set_enabled",
]

MAX_SCRIPT_BYTES = 64 * 1024  # a script typed or pasted in a form; the scanner allows 1 MiB
MAX_VALUES = 100  # patterns of a hosts field, checks of a rule
# A task name (an ECS family is letters, digits, `-` and `_`, up to 255) or the start of one,
# `*` only last: the hosts field takes postfix wildcards; a leading `-` excludes.
_HOST = re.compile(r"-?[^\s,*-][^\s,*]*\*?")
_CHECK = re.compile(r"\*|[0-9]{1,9}")
_SPLIT = re.compile(r"[\s,]+")
EFFECTS = tuple(effect.value for effect in Effect)


class EditError(Exception):
    """An edit refused before the loader sees it (a field of the form, a rule not found)."""


class Direction:
    UP = "up"
    DOWN = "down"


def load_document(text: str | None) -> dict[str, Any]:
    """The document of a stored policy, or a new one (`version: 1`) when none was saved."""
    if text is None:
        return {"version": 1}
    document = yaml.safe_load(text)
    if not isinstance(document, dict):  # a stored policy is a mapping: the loader checked
        raise EditError("the stored policy is not a mapping")
    return document


class _Dumper(yaml.SafeDumper):
    """Scripts as literal blocks (`script: |`), as a person writes them."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def dump(document: dict[str, Any]) -> str:
    text: str = yaml.dump(
        document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text


def _name(text: str, what: str) -> str:
    name = text.strip()
    if not name or len(name) > NAME_LENGTH or not name.isprintable():
        raise EditError(f"{what}: 1 to {NAME_LENGTH} printable characters")
    return name


def _values(text: str, what: str) -> list[str]:
    values = [value for value in _SPLIT.split(text.strip()) if value]
    if len(values) > MAX_VALUES:
        raise EditError(f"{what}: at most {MAX_VALUES} values")
    return values


def parse_hosts(text: str) -> list[str]:
    """Task names or host names, separated by commas or spaces, each exact or ending with
    `*` (a postfix wildcard: `fargate-task*`), `-` first to exclude."""
    values = _values(text, "hosts")
    if not values:
        raise EditError("hosts: at least one task or host name (e.g. fargate-task*)")
    for value in values:
        if len(value) > NAME_LENGTH or not _HOST.fullmatch(value):
            raise EditError(
                f"hosts: {value[:60]!r}: a name, or the start of one followed by `*` "
                "(`*` only at the end)"
            )
    return values


def parse_checks(text: str) -> list[str]:
    """Check ids (`425`, `9001`) or `*`, separated by commas or spaces."""
    values = _values(text, "checks")
    if not values:
        raise EditError("checks: at least one check id (e.g. 425), or *")
    for value in values:
        if not _CHECK.fullmatch(value):
            raise EditError(f"checks: {value[:60]!r}: a check id (digits) or *")
    return values


def parse_effects(text: str) -> dict[str, str]:
    """`425=ignore, 448=block, *=alert`: each check's effect."""
    effects: dict[str, str] = {}
    for item in _values(text, "effects"):
        check, _, effect = item.partition("=")
        if not _CHECK.fullmatch(check) or effect not in EFFECTS:
            raise EditError(
                f"effects: {item[:60]!r}: CHECK=EFFECT, the effect one of {', '.join(EFFECTS)}"
            )
        effects[check] = effect
    if not effects:
        raise EditError("effects: at least one CHECK=EFFECT (e.g. 425=ignore)")
    return effects


def _effect(text: str) -> str:
    if text not in EFFECTS:
        raise EditError(f"effect: one of {', '.join(EFFECTS)}")
    return text


def _list(document: dict[str, Any], key: str) -> list[Any]:
    items = document.get(key)
    if items is None:
        items = document[key] = []
    if not isinstance(items, list):
        raise EditError(f"the stored policy's {key} is not a list")
    return items


def _index(rules: list[Any], name: str) -> int:
    for index, rule in enumerate(rules):
        if isinstance(rule, dict) and rule.get("name") == name:
            return index
    raise EditError(f"no rule named {name[:60]!r} (reload the page)")


def _scope(document: dict[str, Any], collections: list[str]) -> list[str]:
    known = {c.get("name") for c in _list(document, "collections") if isinstance(c, dict)}
    for name in collections:
        if name not in known:
            raise EditError(f"collection: no collection named {name[:60]!r}")
    return collections


def add_collection(document: dict[str, Any], name: str, hosts: str) -> None:
    _list(document, "collections").append(
        {"name": _name(name, "collection name"), "hosts": parse_hosts(hosts)}
    )


def add_rule(
    document: dict[str, Any], name: str, collection: str, effect: str, checks: str
) -> None:
    """A rule appended last (rules are evaluated in order: move it up to take precedence)."""
    rule: dict[str, Any] = {"name": _name(name, "rule name")}
    if collection:
        rule["collections"] = _scope(document, [collection])
    chosen = _effect(effect)
    rule["effects"] = dict.fromkeys(parse_checks(checks), chosen)
    _list(document, "rules").append(rule)


def edit_rule(
    document: dict[str, Any], original: str, name: str, collections: list[str], effects: str
) -> None:
    """A rule's name, collections (none: every target) and effects changed; its place, its
    enabled state and its severity overrides kept."""
    rules = _list(document, "rules")
    rule = rules[_index(rules, original)]
    rule["name"] = _name(name, "rule name")
    if collections:
        rule["collections"] = _scope(document, collections)
    else:
        rule.pop("collections", None)
    rule["effects"] = parse_effects(effects)


def move_rule(document: dict[str, Any], name: str, direction: str) -> None:
    rules = _list(document, "rules")
    index = _index(rules, name)
    if direction not in (Direction.UP, Direction.DOWN):
        raise EditError("direction: up or down")
    other = index - 1 if direction == Direction.UP else index + 1
    if 0 <= other < len(rules):
        rules[index], rules[other] = rules[other], rules[index]


def set_enabled(document: dict[str, Any], name: str, enabled: bool) -> None:
    rules = _list(document, "rules")
    rules[_index(rules, name)]["enabled"] = enabled


def delete_rule(document: dict[str, Any], name: str) -> None:
    rules = _list(document, "rules")
    del rules[_index(rules, name)]


def add_custom_check(
    document: dict[str, Any],
    check_id: str,
    name: str,
    severity: str,
    description: str,
    script: str,
) -> None:
    """A custom check with its script inline; the scanner's loader checks the rest."""
    text = script.replace("\r\n", "\n")
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_SCRIPT_BYTES:
        raise EditError(f"script: larger than {MAX_SCRIPT_BYTES} bytes ({size})")
    _list(document, "custom_checks").append(
        {
            "id": check_id.strip(),
            "name": _name(name, "check name"),
            "severity": severity,
            "description": description.strip(),
            "script": text,
        }
    )
