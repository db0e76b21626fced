"""Rule evaluation: which rule decides each check for a target, and applying that to a report.

Rules are read top to bottom and, per check, the first *enabled* rule that both matches the
target and names the check (or `"*"`) decides it. A rule that matches the target but names
neither the check nor `"*"` does not decide that check: evaluation goes on to the next rule, so a
narrow rule (`{"425": ignore}`) does not silence every other check for its collections. The
built-in default rule (alert on every check) decides whatever no rule did.

A `block` effect is not applied to a Fargate task (there is no host to block on; the product we
follow does the same): the finding is reported as `alert` and the report says so in a notice.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from ..errors import UsageError
from ..report import Report, Severity
from .model import DEFAULT_RULE_NAME, Collection, Effect, Policy, Rule
from .wildcards import FieldMatcher, compile_field

__all__ = ["Decision", "Target", "apply_policy", "decide", "matching_collections", "target_of"]


@dataclass(frozen=True, slots=True)
class Target:
    """What a target is called, per collection field; several values of a field are aliases."""

    hosts: tuple[str, ...] = ()  # hostname; for an ECS task: the task id and the task family
    images: tuple[str, ...] = ()  # image name, tags, id, digest
    containers: tuple[str, ...] = ()  # the scanned container's name
    labels: tuple[str, ...] = ()  # `key=value`
    fargate: bool = False  # an ECS task: a block effect is reported as alert

    def describe(self) -> str:
        parts = [
            f"{name}={','.join(values)}"
            for name, values in (
                ("hosts", self.hosts),
                ("images", self.images),
                ("containers", self.containers),
                ("labels", self.labels),
            )
            if values
        ]
        if self.fargate:
            parts.append("(Fargate task)")
        return " ".join(parts) or "(no identity)"


@dataclass(frozen=True, slots=True)
class Decision:
    """How one check is treated for one target."""

    check: str
    rule: str  # the deciding rule's name (DEFAULT_RULE_NAME for the built-in rule)
    line: int  # where that rule is in the policy file; 0 for the built-in rule
    effect: Effect  # what the rule says
    applied: Effect  # what is done: a block on a Fargate task is applied as alert
    severity: Severity | None  # the rule's severity override, if any


def _strings(values: Iterable[Any]) -> tuple[str, ...]:
    """Non-empty strings, first occurrence kept (the host is often also the task id)."""
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))


def _is_fargate(report: Report) -> bool:
    """Whether the target is a Fargate task. An image scanned there is still an image; a task
    is one by `launch_type` from AWS_EXECUTION_ENV, which the platform sets and is trusted over
    the metadata endpoint (EC2 tasks run on a host that can be blocked on); else by the launch
    type the metadata gives; else when every offline task definition can only run on Fargate
    (one that may run on EC2 may be on a host)."""
    details = report.target_details
    if report.target_kind == "image":
        return False
    platform = details.get("launch_type")
    if isinstance(platform, str):
        return platform == "FARGATE"
    task = details.get("task")
    if isinstance(task, Mapping):
        return bool(task.get("launch_type", "FARGATE") == "FARGATE")
    definitions = details.get("task_definitions") or ()
    return bool(definitions) and all(
        definition.get("compatibilities") == ["FARGATE"] for definition in definitions
    )


def target_of(report: Report) -> Target:
    """The identity a report's target is matched by (see scanner/scan.py `_identify`)."""
    details = report.target_details
    task: Mapping[str, Any] = details.get("task") or {}
    container: Mapping[str, Any] = details.get("container") or {}
    image: Mapping[str, Any] = details.get("image") or {}
    if report.target_kind == "image":
        # The task and container, if any, are where the scanner runs, not what it scans.
        task, container = {}, {}
    labels = image.get("labels") or {}
    # An offline task definition names the family the task runs as: collections match it.
    families = [definition.get("family") for definition in details.get("task_definitions") or ()]
    return Target(
        hosts=_strings([details.get("host"), task.get("id"), task.get("family"), *families]),
        images=_strings(
            [
                image.get("name"),
                *(image.get("tags") or ()),
                image.get("id"),
                image.get("digest"),
                container.get("image"),
                container.get("image_id"),
            ]
        ),
        containers=_strings([container.get("name")]),
        labels=_strings(f"{key}={value}" for key, value in labels.items()),
        fargate=_is_fargate(report),
    )


@functools.lru_cache(maxsize=512)
def _field(values: tuple[str, ...]) -> FieldMatcher:
    return compile_field(values)


def _admits(collection: Collection, target: Target) -> bool:
    return (
        _field(collection.hosts).admits(target.hosts)
        and _field(collection.images).admits(target.images)
        and _field(collection.containers).admits(target.containers)
        and _field(collection.labels).admits(target.labels)
    )


def matching_collections(policy: Policy, target: Target) -> tuple[str, ...]:
    """Names of the policy's collections the target belongs to, in file order."""
    return tuple(name for name, c in policy.collections.items() if _admits(c, target))


def _rule_matches(rule: Rule, policy: Policy, target: Target) -> bool:
    if not rule.collections:
        return True  # no collections: every target
    for name in rule.collections:
        collection = policy.collections.get(name)
        if collection is None:  # only a hand-built Policy can get here: the loader checks
            raise UsageError(f"rule {rule.name!r} names unknown collection {name!r}")
        if _admits(collection, target):
            return True
    return False


def decide(policy: Policy, target: Target, check: str) -> Decision:
    """The first enabled rule matching `target` that names `check` (or "*"); else the default."""
    for rule in policy.rules:
        if not rule.enabled:
            continue
        effect = rule.effects.get(check, rule.effects.get("*"))
        if effect is None or not _rule_matches(rule, policy, target):
            continue
        applied = Effect.ALERT if effect is Effect.BLOCK and target.fargate else effect
        severity = rule.severities.get(check, rule.severities.get("*"))
        return Decision(check, rule.name, rule.line, effect, applied, severity)
    return Decision(check, DEFAULT_RULE_NAME, 0, Effect.ALERT, Effect.ALERT, None)


def _where(policy: Policy, decision: Decision) -> str:
    return f"rule {decision.rule!r} ({policy.source or 'policy'}:{decision.line})"


def _task_name(report: Report) -> str:
    task = report.target_details.get("task") or {}
    family, task_id = task.get("family"), task.get("id") or report.target_details.get("host")
    return f"{family} ({task_id})" if family else str(task_id)


def apply_policy(report: Report, policy: Policy) -> None:
    """Decide every finding of `report` in place: rule, effect, severity override; drop ignored.

    Ignored findings are removed and counted in `report.suppressed`; a notice names the rule.
    On a Fargate task a block is reported as alert, with a notice naming the rule not applied.
    """
    target = target_of(report)
    decisions: dict[str, Decision] = {}

    def decision_for(check: str) -> Decision:
        if check not in decisions:
            decisions[check] = decide(policy, target, check)
        return decisions[check]

    kept = []
    ignored: Counter[str] = Counter()
    unblocked: Counter[str] = Counter()
    for finding in report.findings:
        decision = decision_for(finding.check)
        if decision.applied is Effect.IGNORE:
            ignored[finding.check] += 1
            continue
        if decision.effect is not decision.applied:
            unblocked[finding.check] += 1
        changes: dict[str, Any] = {"rule": decision.rule, "effect": decision.applied}
        if decision.severity is not None:
            changes["severity"] = decision.severity
        kept.append(replace(finding, **changes))
    report.findings[:] = kept
    report.suppressed += sum(ignored.values())
    for check in report.checks:  # checks without findings: say a block would not apply either
        decision_for(check)
    for check, decision in decisions.items():
        if ignored[check]:
            report.notices.append(
                f"{_where(policy, decision)} ignored {ignored[check]} finding(s) of check {check}"
            )
        if decision.effect is Effect.BLOCK and decision.applied is not Effect.BLOCK:
            report.notices.append(
                f"{_where(policy, decision)}: block on check {check} not applied to Fargate task "
                f"{_task_name(report)} (a Fargate task cannot be blocked); "
                f"{unblocked[check]} finding(s) reported as alert"
            )
