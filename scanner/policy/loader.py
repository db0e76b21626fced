"""Read and validate a policy file (YAML, `version: 1`); every error names file, line and field.

The file is composed into YAML nodes (`yaml.compose` with the SafeLoader: no Python objects are
ever constructed from tags), and validated node by node, so each error can point at the line of
the very key or value at fault: `policy.yaml:12: rules[1].effects.425: unknown effect 'blok'`.
All errors are collected and raised together in one PolicyError.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import yaml

from ..checks import BUILTIN_CHECKS
from ..errors import UsageError
from ..jsonload import InputFileError, read_bounded
from ..report import Severity
from .model import DEFAULT_RULE_NAME, Collection, CustomCheckSpec, Effect, Policy, Rule
from .wildcards import PatternError, Shape, compile_field, parse_pattern

__all__ = [
    "FIRST_CUSTOM_ID",
    "PolicyError",
    "PolicyIssue",
    "builtin_check_ids",
    "load_policy",
    "parse_policy",
]

VERSION = 1
FIRST_CUSTOM_ID = 9000
MAX_POLICY_BYTES = 4 * 1024 * 1024  # a policy is hand-written: anything larger is a mistake
MAX_SCRIPT_BYTES = 1024 * 1024
MAX_TIMEOUT = 3600  # seconds: a custom check runs inside every scan
MAX_ID_DIGITS = 9
# A hand-written policy is a few levels deep with a handful of aliases; past these bounds it is
# an attack on the loader (nesting that exhausts recursion, aliases that multiply the walk).
MAX_DEPTH = 32
MAX_ALIASES = 256
MAX_EVENTS = 200_000
MAX_ISSUES = 200
# What an error quotes of a value from the file: an alias can make one 4 MB scalar the subject
# of every error (250 of them were a 1.5 GB message, 4.5 GB of memory).
SHOWN = 60
MAX_MESSAGE = 500
# A custom check's resource limits: (least, most) of each per-check key (defaults in the model).
MEMORY_MIB = (16, 64 * 1024)
PROCESSES = (1, 4096)
FIELDS = ("hosts", "images", "containers", "labels")

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_EFFECTS = ", ".join(effect.value for effect in Effect)
_SEVERITIES = ", ".join(str(severity) for severity in Severity)


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


def builtin_check_ids() -> frozenset[str]:
    """The ids a policy may name besides its own custom checks."""
    return frozenset(check.id for check in BUILTIN_CHECKS)


def _line(node: yaml.Node) -> int:
    return node.start_mark.line + 1


class _Reader:
    """Walks the composed nodes, collecting issues instead of stopping at the first."""

    def __init__(self, source: str, base_dir: str) -> None:
        self.source = source
        self.base_dir = base_dir
        self.issues: list[PolicyIssue] = []
        self._constructor = yaml.constructor.SafeConstructor()

    def error(self, node: yaml.Node | int, field: str, message: str) -> None:
        line = node if isinstance(node, int) else _line(node)
        if len(self.issues) == MAX_ISSUES:
            # Aliases can make one bad node be visited a million times: the list stays short.
            self.issues.append(PolicyIssue(self.source, line, "", "too many errors; stopped"))
            raise _TooManyIssues
        # Values are quoted through _shown; this bounds what any other message may carry
        # (a pattern error quotes its pattern).
        self.issues.append(PolicyIssue(self.source, line, _clip(field), _clip(message)))

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
            where = f"{field}.{_part(key)}" if field else _part(key)
            if key in out:
                self.error(key_node, where, f"duplicate key (first at line {_line(out[key][0])})")
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
        if node.tag != _STR:
            # YAML 1.1 reads `on`, `no`, `12`, `~` as bool, bool, int, null.
            kind = node.tag.rsplit(":", 1)[-1]
            self.error(
                node, field, f"must be a string; {_shown(node.value)} reads as {kind}: quote it"
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
        if node.tag != _BOOL or not isinstance(value, bool):  # `!!bool "x"`: no value at all
            self.error(node, field, "must be true or false")
            return None
        return value

    def integer(self, node: yaml.Node, field: str, least: int, most: int) -> int | None:
        """A whole number in [least, most], or None with an issue."""
        text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        # The length first: int() of thousands of digits is slow, and refused past 4,300.
        if node.tag != _INT or not text.isascii() or not text.isdigit() or len(text) > 9:
            self.error(node, field, f"must be a whole number from {least} to {most}")
            return None
        number = int(text)
        if not least <= number <= most:
            self.error(node, field, f"must be a whole number from {least} to {most}")
            return None
        return number

    def choice(self, node: yaml.Node, field: str, kind: str, parse: Callable[[str], Any]) -> Any:
        """An enum value spelled exactly (lower case), or None with an issue."""
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, field, f"must be a {kind}")
            return None
        try:
            return parse(node.value)
        except (KeyError, ValueError):
            options = _EFFECTS if kind == "effect" else _SEVERITIES
            self.error(node, field, f"unknown {kind} {_shown(node.value)} ({options})")
            return None

    # -- sections -------------------------------------------------------------------------

    def version(self, document: dict[str, tuple[yaml.Node, yaml.Node]]) -> None:
        if "version" not in document:
            return  # reported by `mapping` as a missing required key
        node = document["version"][1]
        if not isinstance(node, yaml.ScalarNode) or node.tag != _INT:
            self.error(node, "version", f"must be the integer {VERSION}")
        elif self.value(node) != VERSION:
            self.error(
                node,
                "version",
                f"unsupported version {_part(node.value)} (this scan-root reads version {VERSION})",
            )

    def collection(self, node: yaml.Node, field: str) -> Collection | None:
        keys = self.mapping(node, field, ("name", *FIELDS), ("name",))
        if keys is None:
            return None
        name = self.string(keys["name"][1], f"{field}.name") if "name" in keys else None
        values: dict[str, tuple[str, ...]] = {}
        for key in FIELDS:
            if key not in keys:
                continue
            where = f"{field}.{key}"
            good = True
            patterns: list[str] = []
            for index, (item, text) in enumerate(self.strings(keys[key][1], where)):
                try:
                    pattern = parse_pattern(text)
                except PatternError as error:
                    self.error(item, f"{where}[{index}]", str(error))
                    good = False
                    continue
                if key == "labels" and pattern.shape is Shape.EXACT and "=" not in text:
                    self.error(
                        item, f"{where}[{index}]", f"{_shown(text)}: a label pattern is key=value"
                    )
                    good = False
                    continue
                patterns.append(text)
            if good:
                try:
                    compile_field(patterns)
                except PatternError as error:
                    self.error(keys[key][1], where, str(error))
            values[key] = tuple(patterns)
        if name is None:
            return None
        return Collection(name=name, line=_line(node), **values)

    def custom_check(self, node: yaml.Node, field: str) -> CustomCheckSpec | None:
        allowed = (
            "id",
            "name",
            "severity",
            "description",
            "script",
            "script_file",
            "timeout",
            "memory_mib",
            "processes",
        )
        keys = self.mapping(node, field, allowed, ("id", "name", "severity", "description"))
        if keys is None:
            return None
        check_id = self.check_id(keys["id"][1], f"{field}.id") if "id" in keys else None
        name = self.string(keys["name"][1], f"{field}.name") if "name" in keys else None
        severity = (
            self.choice(keys["severity"][1], f"{field}.severity", "severity", _severity)
            if "severity" in keys
            else None
        )
        description = (
            self.string(keys["description"][1], f"{field}.description")
            if "description" in keys
            else None
        )
        script = self.script(node, keys, field)
        timeout = 60.0
        if "timeout" in keys:
            timeout_node = keys["timeout"][1]
            number = (
                self.value(timeout_node)
                if isinstance(timeout_node, yaml.ScalarNode) and timeout_node.tag in (_INT, _FLOAT)
                else None
            )
            if number is None or not math.isfinite(number) or not 0 < number <= MAX_TIMEOUT:
                self.error(
                    timeout_node,
                    f"{field}.timeout",
                    f"must be a number of seconds > 0 and at most {MAX_TIMEOUT}",
                )
            else:
                timeout = float(number)
        limits = {
            key: self.integer(keys[key][1], f"{field}.{key}", *bounds)
            for key, bounds in (("memory_mib", MEMORY_MIB), ("processes", PROCESSES))
            if key in keys
        }
        if None in (check_id, name, severity, description, script, *limits.values()):
            return None
        return CustomCheckSpec(
            id=check_id,  # type: ignore[arg-type]
            name=name,  # type: ignore[arg-type]
            severity=severity,  # type: ignore[arg-type]
            description=description,  # type: ignore[arg-type]
            script=script,  # type: ignore[arg-type]
            timeout=timeout,
            line=_line(node),
            **limits,  # type: ignore[arg-type]
        )

    def check_id(self, node: yaml.Node, field: str) -> str | None:
        text = str(node.value) if isinstance(node, yaml.ScalarNode) else ""
        if node.tag not in (_INT, _STR) or not text.isascii() or not text.isdigit():
            self.error(node, field, f"must be a decimal number >= {FIRST_CUSTOM_ID}")
            return None
        if len(text) > MAX_ID_DIGITS:  # before int(): thousands of digits are slow, or refused
            self.error(node, field, f"longer than {MAX_ID_DIGITS} digits")
            return None
        if int(text) < FIRST_CUSTOM_ID or text != str(int(text)):
            self.error(
                node,
                field,
                f"custom check ids are {FIRST_CUSTOM_ID} and up, without leading zeros; "
                f"got {text!r}",
            )
            return None
        return text

    def script(
        self, node: yaml.Node, keys: dict[str, tuple[yaml.Node, yaml.Node]], field: str
    ) -> bytes | None:
        given = [key for key in ("script", "script_file") if key in keys]
        if len(given) != 1:
            reason = "both given" if given else "neither given"
            self.error(node, field, f"exactly one of 'script' or 'script_file' ({reason})")
            return None
        value_node = keys[given[0]][1]
        where = f"{field}.{given[0]}"
        text = self.string(value_node, where)
        if text is None:
            return None
        if given[0] == "script":
            data = text.encode("utf-8")
        else:
            path = os.path.join(self.base_dir, text)  # relative to the policy file
            # Beneath the policy's directory only: the script's output reaches the report, and
            # `sh` echoes each line it cannot run, so `script_file: /root/.ssh/id_rsa` (or a
            # symlink to it) printed the key, line by line, from a scan run as root.
            base = os.path.realpath(self.base_dir)
            real = os.path.realpath(path)
            if os.path.isabs(text) or not real.startswith(base.rstrip("/") + "/"):
                self.error(value_node, where, "must be a file beneath the policy file's directory")
                return None
            try:
                data = read_bounded(path, what="script", max_bytes=MAX_SCRIPT_BYTES)
            except OSError as error:
                self.error(value_node, where, f"cannot read {path}: {error.strerror or error}")
                return None
            except InputFileError as error:  # not a regular file, or too large
                self.error(value_node, where, str(error))
                return None
        if len(data) > MAX_SCRIPT_BYTES:
            self.error(value_node, where, f"script larger than {MAX_SCRIPT_BYTES} bytes")
            return None
        if not data.strip():
            self.error(value_node, where, "empty script")
            return None
        return data

    def rule(
        self,
        node: yaml.Node,
        field: str,
        collections: dict[str, Collection],
        known_checks: frozenset[str],
        custom_ids: Sequence[str],
    ) -> Rule | None:
        allowed = ("name", "collections", "enabled", "effects", "severity")
        keys = self.mapping(node, field, allowed, ("name", "effects"))
        if keys is None:
            return None
        name = self.string(keys["name"][1], f"{field}.name") if "name" in keys else None
        if name == DEFAULT_RULE_NAME:
            self.error(
                keys["name"][1], f"{field}.name", f"'{DEFAULT_RULE_NAME}' is the built-in last rule"
            )
            name = None
        scope: list[str] = []
        if "collections" in keys:
            for index, (item, text) in enumerate(
                self.strings(keys["collections"][1], f"{field}.collections")
            ):
                if text not in collections:
                    known = ", ".join(map(_shown, collections)) or "none declared"
                    self.error(
                        item,
                        f"{field}.collections[{index}]",
                        f"unknown collection {_shown(text)} (known: {known})",
                    )
                else:
                    scope.append(text)
        enabled = True
        if "enabled" in keys:
            enabled = self.boolean(keys["enabled"][1], f"{field}.enabled") is not False
        effects = self.per_check(
            keys.get("effects"), f"{field}.effects", "effect", Effect, known_checks, custom_ids
        )
        if "effects" in keys and effects is not None and not effects:
            self.error(keys["effects"][1], f"{field}.effects", "names no check")
        severities = self.per_check(
            keys.get("severity"),
            f"{field}.severity",
            "severity",
            _severity,
            known_checks,
            custom_ids,
        )
        if effects is not None and severities:
            for check, key_node in self._keys(keys["severity"][1]).items():
                if (
                    check in severities
                    and check != "*"
                    and check not in effects
                    and "*" not in effects
                ):
                    self.error(
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
            line=_line(node),
        )

    @staticmethod
    def _keys(node: yaml.Node) -> dict[str, yaml.Node]:
        if not isinstance(node, yaml.MappingNode):
            return {}
        return {k.value: k for k, _ in node.value if isinstance(k, yaml.ScalarNode)}

    def per_check(
        self,
        entry: tuple[yaml.Node, yaml.Node] | None,
        field: str,
        kind: str,
        parse: Callable[[str], Any],
        known_checks: frozenset[str],
        custom_ids: Sequence[str],
    ) -> dict[str, Any] | None:
        """{check id or "*": value} of an effects/severity mapping; None when it is unusable."""
        if entry is None:
            return {}
        keys = self.mapping(entry[1], field, None)
        if keys is None:
            return None
        out: dict[str, Any] = {}
        usable = True
        for check, (key_node, value_node) in keys.items():
            where = f"{field}.{_part(check)}"
            if check != "*" and (key_node.tag not in (_INT, _STR) or check not in known_checks):
                builtin = ", ".join(sorted(known_checks - set(custom_ids)))
                custom = ", ".join(custom_ids) or "none declared"
                self.error(
                    key_node,
                    where,
                    f"unknown check id {_shown(check)} (built-in: {builtin}; custom: {custom}; "
                    "or '*')",
                )
                usable = False
                continue
            value = self.choice(value_node, where, kind, parse)
            if value is None:
                usable = False
                continue
            out[check] = value
        return out if usable else None


def _severity(text: str) -> Severity:
    if text != text.lower():
        raise ValueError(text)
    return Severity[text.upper()]


def parse_policy(data: bytes | str, source: str = "<policy>", base_dir: str = ".") -> Policy:
    """Validate a policy document; `script_file` paths are relative to `base_dir`.

    Raises PolicyError listing every issue, each with `source:line: field: message`.
    """
    try:
        _check_shape(data, source)
        top = yaml.compose(data, Loader=yaml.SafeLoader)
        if top is not None:
            _check_expansion(top, source)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise PolicyError([PolicyIssue(source, line, "", f"invalid YAML: {problem}")]) from error
    except yaml.YAMLError as error:  # ReaderError: not UTF-8, or a control character
        raise PolicyError([PolicyIssue(source, 1, "", f"invalid YAML: {error}")]) from error
    if top is None:
        raise PolicyError([PolicyIssue(source, 1, "", "empty policy (expected 'version: 1')")])
    reader = _Reader(source, base_dir)
    try:
        return _validate(top, reader, source)
    except _TooManyIssues:
        raise PolicyError(reader.issues) from None


def _validate(top: yaml.Node, reader: _Reader, source: str) -> Policy:
    document = reader.mapping(
        top, "", ("version", "collections", "rules", "custom_checks"), ("version",)
    )
    if document is None:
        raise PolicyError(reader.issues)
    reader.version(document)

    custom: list[CustomCheckSpec] = []
    seen_ids: dict[str, int] = {}
    if "custom_checks" in document:
        for index, node in enumerate(
            reader.sequence(document["custom_checks"][1], "custom_checks")
        ):
            field = f"custom_checks[{index}]"
            spec = reader.custom_check(node, field)
            if spec is None:
                continue
            what = f"id {spec.id}"
            if not reader.duplicate(seen_ids.get(spec.id), node, f"{field}.id", what):
                seen_ids[spec.id] = spec.line
                custom.append(spec)
    custom_ids = [spec.id for spec in custom]
    known_checks = builtin_check_ids() | frozenset(custom_ids)

    collections: dict[str, Collection] = {}
    if "collections" in document:
        for index, node in enumerate(reader.sequence(document["collections"][1], "collections")):
            field = f"collections[{index}]"
            collection = reader.collection(node, field)
            if collection is None:
                continue
            first = collections.get(collection.name)
            what = f"collection name {_shown(collection.name)}"
            if not reader.duplicate(first.line if first else None, node, f"{field}.name", what):
                collections[collection.name] = collection

    rules: list[Rule] = []
    if "rules" in document:
        names: dict[str, int] = {}
        for index, node in enumerate(reader.sequence(document["rules"][1], "rules")):
            field = f"rules[{index}]"
            rule = reader.rule(node, field, collections, known_checks, custom_ids)
            name = rule.name if rule is not None else _name_of(node)
            if name is None:
                continue
            # Checked for an invalid rule too: one error must not hide another.
            what = f"rule name {_shown(name)}"
            if not reader.duplicate(names.get(name), node, f"{field}.name", what):
                names[name] = _line(node)
                if rule is not None:
                    rules.append(rule)

    if reader.issues:
        raise PolicyError(reader.issues)
    return Policy(
        version=VERSION,
        collections=MappingProxyType(collections),
        rules=tuple(rules),
        custom_checks=tuple(custom),
        source=source,
    )


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file at `path` (see parse_policy)."""
    source = os.fspath(path)
    try:
        data = read_bounded(source, what="policy", max_bytes=MAX_POLICY_BYTES)
    except OSError as error:
        raise PolicyError(
            [PolicyIssue(source, None, "", f"cannot read: {error.strerror or error}")]
        ) from error
    except InputFileError as error:  # a FIFO, a device, or larger than MAX_POLICY_BYTES
        raise PolicyError([PolicyIssue(source, None, "", str(error))]) from error
    return parse_policy(data, source, os.path.dirname(os.path.abspath(source)))


def _shown(value: object) -> str:
    """A value from the file as an error quotes it: its repr, cut at SHOWN characters."""
    text = str(value)
    if len(text) <= SHOWN:
        return repr(text)
    return f"{text[:SHOWN]!r}... ({len(text)} characters)"


def _part(key: object) -> str:
    """A key from the file as a field path names it, cut at SHOWN characters."""
    text = str(key)
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}... ({len(text)} characters)"


def _clip(text: str) -> str:
    if len(text) <= MAX_MESSAGE:
        return text
    return f"{text[: MAX_MESSAGE // 2]} ... {text[-MAX_MESSAGE // 4 :]}"


class _TooManyIssues(Exception):
    """MAX_ISSUES reached: validation stops, the issues so far are the answer."""


def _name_of(node: yaml.Node) -> str | None:
    """The `name:` string of a mapping node, whatever else is wrong with it."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "name" and isinstance(value, yaml.ScalarNode):
                return str(value.value)
    return None


def _check_shape(data: bytes | str, source: str) -> None:
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


def _check_expansion(top: yaml.Node, source: str) -> None:
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
    raise PolicyError([PolicyIssue(source, _line(node), "", message)])
