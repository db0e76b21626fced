"""Policies: collections, ordered rules and custom checks that decide what each finding means."""

from __future__ import annotations

from .evaluate import Decision, Target, apply_policy, decide, matching_collections, target_of
from .loader import PolicyError, PolicyIssue, load_policy, parse_policy
from .model import DEFAULT_RULE_NAME, Collection, CustomCheckSpec, Effect, Policy, Rule

__all__ = [
    "DEFAULT_RULE_NAME",
    "Collection",
    "CustomCheckSpec",
    "Decision",
    "Effect",
    "Policy",
    "PolicyError",
    "PolicyIssue",
    "Rule",
    "Target",
    "apply_policy",
    "decide",
    "load_policy",
    "matching_collections",
    "parse_policy",
    "target_of",
]
