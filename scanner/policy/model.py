"""The records a policy file is read into: collections, rules, custom-check declarations."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# A custom check is the checks package's record; a policy declares them (imports flow policy ->
# checks, never back).
from ..checks.custom.spec import CustomCheckSpec
from ..kinds import Effect
from ..report import Severity

__all__ = ["DEFAULT_RULE_NAME", "Collection", "CustomCheckSpec", "Effect", "Policy", "Rule"]

DEFAULT_RULE_NAME = "default"  # the built-in last rule: alert on every check


@dataclass(frozen=True, slots=True)
class Collection:
    """A named set of targets. Fields are ANDed, the values of one field ORed; an empty field
    matches everything. Values are wildcard patterns (`abc*`, `*abc`, `*abc*`, exact), compared
    case-insensitively; a leading `-` excludes."""

    name: str
    hosts: tuple[str, ...] = ()  # for Fargate: the task family (task name) or the task id
    images: tuple[str, ...] = ()
    containers: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # `key=value` patterns
    line: int = 0  # where the collection starts in the policy file, for explanations


@dataclass(frozen=True, slots=True)
class Rule:
    """One ordered rule: for targets in any of `collections` (none: every target), each check
    id's effect. It decides only the checks it names, or every check with "*"."""

    name: str
    collections: tuple[str, ...]
    effects: Mapping[str, Effect]  # check id -> effect; "*" for every check not named
    severities: Mapping[str, Severity] = field(default_factory=dict)  # check id -> override
    enabled: bool = True
    line: int = 0  # where the rule starts in the policy file, for explanations


@dataclass(frozen=True, slots=True)
class Policy:
    """A whole validated policy file."""

    version: int
    collections: Mapping[str, Collection]
    rules: tuple[Rule, ...]  # in file order; the default rule is not listed here
    custom_checks: tuple[CustomCheckSpec, ...] = ()
    source: str = ""  # the file it was read from
