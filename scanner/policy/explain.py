"""`scan-root policy check`: a validated policy spelled out, and what it decides for a target."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .evaluate import Target, decide, matching_collections
from .loader import builtin_check_ids
from .model import DEFAULT_RULE_NAME, Policy

__all__ = ["explain"]

_FIELDS = ("hosts", "images", "containers", "labels")


def _pairs(mapping: Mapping[str, object]) -> str:
    return ", ".join(f"{key}={value}" for key, value in mapping.items())


def _check_order(ids: Iterable[str]) -> list[str]:
    return sorted(set(ids), key=lambda check: (len(check), check))  # numeric order


def explain(policy: Policy, target: Target | None = None) -> str:
    """The policy in evaluation order; with a target, which rule decides each check for it."""
    source = policy.source or "policy"
    lines = [f"{source}: valid policy (version {policy.version})", ""]
    lines.append(f"collections: {len(policy.collections)}")
    for collection in policy.collections.values():
        fields = [
            f"{name}: {', '.join(getattr(collection, name))}"
            for name in _FIELDS
            if getattr(collection, name)
        ]
        scope = "; ".join(fields) or "every target"
        lines.append(f"  {collection.name} (line {collection.line}): {scope}")
    lines.append("")
    lines.append(
        "rules, first match wins (per check: a rule decides only the checks it names, or *):"
    )
    for number, rule in enumerate(policy.rules, 1):
        state = "" if rule.enabled else "  [disabled: skipped]"
        scope = ", ".join(rule.collections) or "every target"
        lines.append(f"  {number}. {rule.name} (line {rule.line}){state}")
        lines.append(f"     collections: {scope}")
        lines.append(f"     effects: {_pairs(rule.effects)}")
        if rule.severities:
            lines.append(f"     severity: {_pairs(rule.severities)}")
    lines.append(f"  {len(policy.rules) + 1}. {DEFAULT_RULE_NAME} (built-in): *=alert")
    lines.append("")
    lines.append(f"custom checks: {len(policy.custom_checks)}")
    for spec in policy.custom_checks:
        lines.append(
            f"  {spec.id} {spec.name} ({spec.severity}, timeout {spec.timeout:g} s, "
            f"line {spec.line}): {spec.description}"
        )
    if target is not None:
        lines.append("")
        lines.append(f"target: {target.describe()}")
        collections = matching_collections(policy, target)
        lines.append(f"  in collections: {', '.join(collections) or 'none'}")
        checks = _check_order([*builtin_check_ids(), *(spec.id for spec in policy.custom_checks)])
        for check in checks:
            decision = decide(policy, target, check)
            where = f"line {decision.line}" if decision.line else "built-in"
            text = f"  {check}: {decision.applied} by rule {decision.rule!r} ({where})"
            if decision.severity is not None:
                text += f", severity {decision.severity}"
            if decision.applied is not decision.effect:
                text += f"; the rule says {decision.effect}, not applied to a Fargate task"
            lines.append(text)
    return "\n".join(lines) + "\n"
