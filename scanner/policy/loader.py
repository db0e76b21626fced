"""Read and validate a policy file (YAML, `version: 1`); every error names file, line and field.

The file is composed into YAML nodes (`yaml.compose` with the SafeLoader: no Python objects are
ever constructed from tags), and validated node by node, so each error can point at the line of
the very key or value at fault: `policy.yaml:12: rules[1].effects.425: unknown effect 'blok'`.
All errors are collected and raised together in one PolicyError.
"""

from __future__ import annotations

import os
from types import MappingProxyType

import yaml

from ..checks import BUILTIN_CHECKS
from ..jsonload import InputFileError, read_bounded
from ._custom_checks import FIRST_CUSTOM_ID, read_custom_check
from ._nodes import (
    INT,
    NodeReader,
    PolicyError,
    PolicyIssue,
    TooManyIssues,
    line_of,
    name_of,
    part,
    shown,
)
from ._rules import read_collection, read_rule
from ._shape import check_expansion, check_shape
from .model import Collection, CustomCheckSpec, Policy, Rule

__all__ = [
    "FIRST_CUSTOM_ID",
    "PolicyError",
    "PolicyIssue",
    "builtin_check_ids",
    "load_policy",
    "parse_policy",
]

VERSION = 1
MAX_POLICY_BYTES = 4 * 1024 * 1024  # a policy is hand-written: anything larger is a mistake


def builtin_check_ids() -> frozenset[str]:
    """The ids a policy may name besides its own custom checks."""
    return frozenset(check.id for check in BUILTIN_CHECKS)


def _read_version(reader: NodeReader, document: dict[str, tuple[yaml.Node, yaml.Node]]) -> None:
    if "version" not in document:
        return  # reported by `mapping` as a missing required key
    node = document["version"][1]
    if not isinstance(node, yaml.ScalarNode) or node.tag != INT:
        reader.error(node, "version", f"must be the integer {VERSION}")
    elif reader.value(node) != VERSION:
        reader.error(
            node,
            "version",
            f"unsupported version {part(node.value)} (this scan-root reads version {VERSION})",
        )


def parse_policy(data: bytes | str, source: str = "<policy>", base_dir: str = ".") -> Policy:
    """Validate a policy document; `script_file` paths are relative to `base_dir`.

    Raises PolicyError listing every issue, each with `source:line: field: message`.
    """
    try:
        check_shape(data, source)
        top = yaml.compose(data, Loader=yaml.SafeLoader)
        if top is not None:
            check_expansion(top, source)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = " ".join(part for part in (error.context, error.problem) if part)
        raise PolicyError([PolicyIssue(source, line, "", f"invalid YAML: {problem}")]) from error
    except yaml.YAMLError as error:  # ReaderError: not UTF-8, or a control character
        raise PolicyError([PolicyIssue(source, 1, "", f"invalid YAML: {error}")]) from error
    if top is None:
        raise PolicyError([PolicyIssue(source, 1, "", "empty policy (expected 'version: 1')")])
    reader = NodeReader(source)
    try:
        return _validate(top, reader, source, base_dir)
    except TooManyIssues:
        raise PolicyError(reader.issues) from None


def _validate(top: yaml.Node, reader: NodeReader, source: str, base_dir: str) -> Policy:
    document = reader.mapping(
        top, "", ("version", "collections", "rules", "custom_checks"), ("version",)
    )
    if document is None:
        raise PolicyError(reader.issues)
    _read_version(reader, document)

    custom: list[CustomCheckSpec] = []
    seen_ids: dict[str, int] = {}
    if "custom_checks" in document:
        for index, node in enumerate(
            reader.sequence(document["custom_checks"][1], "custom_checks")
        ):
            field = f"custom_checks[{index}]"
            spec = read_custom_check(reader, node, field, base_dir)
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
            collection = read_collection(reader, node, field)
            if collection is None:
                continue
            first = collections.get(collection.name)
            what = f"collection name {shown(collection.name)}"
            if not reader.duplicate(first.line if first else None, node, f"{field}.name", what):
                collections[collection.name] = collection

    rules: list[Rule] = []
    if "rules" in document:
        names: dict[str, int] = {}
        for index, node in enumerate(reader.sequence(document["rules"][1], "rules")):
            field = f"rules[{index}]"
            rule = read_rule(reader, node, field, collections, known_checks, custom_ids)
            name = rule.name if rule is not None else name_of(node)
            if name is None:
                continue
            # Checked for an invalid rule too: one error must not hide another.
            what = f"rule name {shown(name)}"
            if not reader.duplicate(names.get(name), node, f"{field}.name", what):
                names[name] = line_of(node)
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
