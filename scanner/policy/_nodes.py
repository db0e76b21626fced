"""Typed values read from composed YAML nodes, every error collected with its file and line."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from ..errors import UsageError

__all__ = [
    "BOOL",
    "FLOAT",
    "INT",
    "STR",
    "NodeReader",
    "PolicyError",
    "PolicyIssue",
    "TooManyIssues",
    "clip",
    "line_of",
    "name_of",
    "part",
    "shown",
]

MAX_ISSUES = 200
# What an error quotes of a value from the file: an alias can make one 4 MB scalar the subject
# of every error (250 of them were a 1.5 GB message, 4.5 GB of memory).
SHOWN = 60
MAX_MESSAGE = 500

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One thing wrong with a policy file, where it is."""

    source: str
    line: int | None  # None: about the file as a whole (cannot read it)
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.field}: " if self.field else ""
        line = f"{self.line}:" if self.line is not None else ""
        return f"{self.source}:{line} {where}{self.message}"


class PolicyError(UsageError):
    """A policy file that cannot be used; `issues` lists every problem found, in file order."""

    def __init__(self, issues: Sequence[PolicyIssue]) -> None:
        self.issues = tuple(sorted(issues, key=lambda issue: issue.line or 0))
        super().__init__("\n".join(str(issue) for issue in self.issues))


def line_of(node: yaml.Node) -> int:
    return node.start_mark.line + 1


def shown(value: object) -> str:
    """A value from the file as an error quotes it: its repr, cut at SHOWN characters."""
    text = str(value)
    if len(text) <= SHOWN:
        return repr(text)
    return f"{text[:SHOWN]!r}... ({len(text)} characters)"


def part(key: object) -> str:
    """A key from the file as a field path names it, cut at SHOWN characters."""
    text = str(key)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


def clip(text: str) -> str:
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[: MAX_MESSAGE // 2]} ... {text[-MAX_MESSAGE // 4 :]}"


class TooManyIssues(Exception):
    """MAX_ISSUES reached: validation stops, the issues so far are the answer."""


def name_of(node: yaml.Node) -> str | None:
    """The `name:` string of a mapping node, whatever else is wrong with it."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "name" and isinstance(value, yaml.ScalarNode):
                return str(value.value)
    return None


class NodeReader:
    """Walks the composed nodes, collecting issues instead of stopping at the first."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.issues: list[PolicyIssue] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node | int, field: str, message: str) -> None:
        line = node if isinstance(node, int) else line_of(node)
        if len(self.issues) == MAX_ISSUES:
            # Aliases can make one bad node be visited a million times: the list stays short.
            self.issues.append(PolicyIssue(self.source, line, "", "too many errors; stopped"))
            raise TooManyIssues
        # Values are quoted through _shown; this bounds what any other message may carry
        # (a pattern error quotes its pattern).
        self.issues.append(PolicyIssue(self.source, line, clip(field), clip(message)))

    def value(self, node: yaml.ScalarNode) -> Any:
        """The scalar's value; None when its tag's constructor refuses its text: a number int()
        refuses (more than 4,300 digits), an explicit `!!int ""` (IndexError), `!!bool "x"`
        (KeyError)."""
        try:
            return self._constructor.construct_object(node)
        except (ValueError, IndexError, KeyError, yaml.YAMLError):
            return None

    def duplicate(self, first_line: int | None, node: yaml.Node, field: str, what: str) -> bool:
        """True, with an error naming the first one, when an id or name was seen already (at
        `first_line`; None: not seen)."""
        if first_line is None:
            return False
        self.error(node, field, f"duplicate {what} (first at line {first_line})")
        return True

    # -- shapes ---------------------------------------------------------------------------

    def mapping(
        self,
        node: yaml.Node,
        field: str,
        allowed: Sequence[str] | None,
        required: Sequence[str] = (),
    ) -> dict[str, tuple[yaml.Node, yaml.Node]] | None:
        """{key: (key node, value node)}; None (with an issue) when `node` is not a mapping.

        `allowed` None: any scalar key (effects, severity); else unknown keys are issues.
        """
        if not isinstance(node, yaml.MappingNode):
            self.error(node, field, "must be a mapping")
            return None
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, field, "keys must be plain values")
                continue
            key = key_node.value
            where = f"{field}.{part(key)}" if field else part(key)
            if key in out:
                self.error(key_node, where, f"duplicate key (first at line {line_of(out[key][0])})")
                continue
            if allowed is not None and key not in allowed:
                self.error(key_node, where, f"unknown key (known: {', '.join(allowed)})")
                continue
            out[key] = (key_node, value_node)
        for key in required:
            if key not in out:
                self.error(node, field or "(top level)", f"missing required key '{key}'")
        return out

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode):
            self.error(node, field, "must be a list")
            return []
        return list(node.value)

    def string(self, node: yaml.Node, field: str, *, empty: bool = False) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, field, "must be a string")
            return None
        if node.tag != STR:
            # YAML 1.1 reads `on`, `no`, `12`, `~` as bool, bool, int, null.
            kind = node.tag.rsplit(":", 1)[-1]
            self.error(
                node, field, f"must be a string; {shown(node.value)} reads as {kind}: quote it"
            )
            return None
        if not node.value and not empty:
            self.error(node, field, "must not be empty")
            return None
        return str(node.value)

    def strings(self, node: yaml.Node, field: str) -> list[tuple[yaml.Node, str]]:
        out = []
        for index, item in enumerate(self.sequence(node, field)):
            text = self.string(item, f"{field}[{index}]")
            if text is not None:
                out.append((item, text))
        return out

    def boolean(self, node: yaml.Node, field: str) -> bool | None:
        value = self.value(node) if isinstance(node, yaml.ScalarNode) else None
        if node.tag != BOOL or not isinstance(value, bool):  # `!!bool "x"`: no value at all
            self.error(node, field, "must be true or false")
            return None
        return value

    def integer(self, node: yaml.Node, field: str, least: int, most: int) -> int | None:
        """A whole number in [least, most], or None with an issue."""
        text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        # The length first: int() of thousands of digits is slow, and refused past 4,300.
        if node.tag != INT or not text.isascii() or not text.isdigit() or len(text) > 9:
            self.error(node, field, f"must be a whole number from {least} to {most}")
            return None
        number = int(text)
        if not least <= number <= most:
            self.error(node, field, f"must be a whole number from {least} to {most}")
            return None
        return number

    def choice(
        self, node: yaml.Node, field: str, kind: str, parse: Callable[[str], Any], options: str
    ) -> Any:
        """An enum value spelled exactly (lower case), or None with an issue naming `options`."""
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, field, f"must be a {kind}")
            return None
        try:
            return parse(node.value)
        except (KeyError, ValueError):
            self.error(node, field, f"unknown {kind} {shown(node.value)} ({options})")
            return None
