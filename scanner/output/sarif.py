"""SARIF 2.1.0: one run, a rule per check that ran, a result per finding, problems as notifications.

Spec: https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/sarif-v2.1.0-errata01-os.html
Paths are relative URI references against the `ROOT` base (`/` inside the container), so that
`usr/bin/ls` resolves against `file:///` for the live root, or against the scanned directory on
the host; the path as JSON shows it (`/usr/bin/ls`, `path_hex`) is kept in the properties.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any
from urllib.parse import quote

from ..report import (
    Effect,
    Finding,
    Problem,
    ProblemKind,
    Report,
    Severity,
    Vulnerability,
    display_path,
)
from .escape import json_safe

__all__ = ["SARIF_SCHEMA_URI", "render"]

SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
ROOT_BASE = "ROOT"

_LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
}
# Problem kinds (Report.problems), described once in the driver's `notifications`: every
# member (tests/test_sarif.py), so that no notification is described by its bare kind.
_PROBLEMS: dict[str, str] = {
    ProblemKind.COULD_NOT_VERIFY: "An item could not be verified (a result, never a pass)",
    ProblemKind.PACKAGE_DB: "A package database could not be read",
    ProblemKind.WALK: "Part of the root could not be walked",
    ProblemKind.CONTENT_SKIPPED: "A file was not searched (too large or unreadable)",
    ProblemKind.CUSTOM_CHECK_ERROR: "A custom check could not decide",
    ProblemKind.CUSTOM_CHECK_SKIPPED: "A custom check did not run",
    ProblemKind.IMAGE_CHANGED: "The image changed while it was scanned",
    ProblemKind.IMAGE_MEMBER_SKIPPED: "An image member was not extracted, so it was not verified",
    ProblemKind.NO_PACKAGE_DB: "No package database: nothing to verify package files against",
    ProblemKind.INPUT: "An input file had a line that could not be used",
    ProblemKind.IMAGE: "Something in the image could not be applied",
    ProblemKind.PRIORITY: "The scan's CPU and I/O priority could not be lowered (--nice)",
    ProblemKind.STATE: "The --state file could not be used or written (a full scan ran)",
    ProblemKind.TASK_METADATA: "The ECS task metadata endpoint could not be read",
    ProblemKind.CONTAINER: "A container of the task could not be scanned",
    ProblemKind.DELIVERY: "Earlier reports were dropped or refused before reaching the console",
    ProblemKind.POLICY: "The console's policy could not be fetched (the cached one, or none, ran)",
    ProblemKind.TRUNCATED: "Findings were left out of the report to fit the console",
    ProblemKind.VULNERABILITIES: "Packages could not be checked against the advisory database",
    ProblemKind.ADVISORIES: "The console's advisory database could not be fetched (the cached one ran)",
}


def _level(finding: Finding) -> str:
    return "error" if finding.effect == Effect.BLOCK else _LEVELS[finding.severity]


def _pascal(title: str) -> str:
    """SARIF rule names are identifiers: "Package binaries should not be altered" -> Package..."""
    return "".join(word[:1].upper() + word[1:] for word in re.findall(r"[A-Za-z0-9]+", title))


def _uri(path: bytes) -> str:
    """The root-relative path as a URI reference: every byte outside the unreserved set (spaces,
    newlines, non-UTF-8 bytes) percent-encoded, so the raw name survives a round trip."""
    return quote(path.lstrip(b"/"), safe="/")


def _rules(report: Report) -> list[dict[str, Any]]:
    ids = list(dict.fromkeys([*report.checks, *(f.check for f in report.findings)]))
    described = {info.id: info for info in report.check_info}
    rules = []
    for check in ids:
        reported = [f for f in report.findings if f.check == check]
        info = described.get(check)
        title = info.title if info else reported[0].title if reported else f"check {check}"
        worst = (info.worst if info else None) or max(
            (f.severity for f in reported), default=Severity.MEDIUM
        )
        rules.append(
            {
                "id": check,
                "name": _pascal(title) or f"Check{check}",
                "shortDescription": {"text": title},
                "defaultConfiguration": {"level": _LEVELS[worst]},
                "properties": {"severity": str(worst)},
            }
        )
    return rules


def _location(finding: Finding) -> dict[str, Any] | None:
    location: dict[str, Any] = {}
    if finding.path:
        physical: dict[str, Any] = {
            "artifactLocation": {"uri": _uri(finding.path), "uriBaseId": ROOT_BASE}
        }
        line = finding.extra.get("line")
        if isinstance(line, int) and not isinstance(line, bool) and line >= 1:
            physical["region"] = {"startLine": line}
        location["physicalLocation"] = physical
    logical = []
    if finding.package is not None:
        package = finding.package
        logical.append(
            {
                "name": package.name,
                "fullyQualifiedName": f"{package.manager}:{package.name}@{package.version}",
                "kind": "package",
            }
        )
    source = finding.extra.get("source")
    if isinstance(source, str):  # 424: the environment the variables were set in
        logical.append({"name": source, "kind": "resource"})
    if logical:
        location["logicalLocations"] = logical
    return location or None


def _message(finding: Finding) -> str:
    """The table's line in words: what, where, whose, why (never secret material)."""
    text = f"{finding.title}: {finding.kind}"
    if finding.path:
        text += f" {display_path(finding.path)}"
    if finding.package is not None:
        package = finding.package
        text += f" ({package.manager} {package.name} {package.version})"
    if finding.detail:
        text += f": {finding.detail}"
    return text


def _result(finding: Finding, rule_index: dict[str, int]) -> dict[str, Any]:
    properties = finding.to_dict()
    for key in ("check", "title"):  # already the rule
        properties.pop(key, None)
    properties["baselined"] = finding.baselined
    result: dict[str, Any] = {
        "ruleId": finding.check,
        "ruleIndex": rule_index[finding.check],
        "level": _level(finding),
        "message": {"text": _message(finding)},
        "properties": properties,
    }
    location = _location(finding)
    if location is not None:
        result["locations"] = [location]
    if finding.baselined:
        result["suppressions"] = [
            {"kind": "external", "status": "accepted", "justification": "accepted by the baseline"}
        ]
    return result


def _vulnerability_rules(report: Report) -> list[dict[str, Any]]:
    """One rule per advisory id (as other scanners' SARIF has it): its summary and severity."""
    rules: dict[str, dict[str, Any]] = {}
    for entry in report.vulnerabilities or ():
        if entry.id in rules:
            continue
        properties: dict[str, Any] = {
            "severity": "unknown" if entry.severity is None else str(entry.severity),
            "tags": ["vulnerability", "security"],
        }
        if entry.cvss is not None:
            # GitHub code scanning's key for a security rule's score
            properties["security-severity"] = f"{entry.cvss:.1f}"
        rules[entry.id] = {
            "id": entry.id,
            "name": "Vulnerability",
            "shortDescription": {"text": entry.summary or entry.id},
            "defaultConfiguration": {"level": _vulnerability_level(entry)},
            "properties": properties,
        }
    return list(rules.values())


def _vulnerability_level(entry: Vulnerability) -> str:
    return "warning" if entry.severity is None else _LEVELS[entry.severity]


def _vulnerability_result(entry: Vulnerability, rule_index: dict[str, int]) -> dict[str, Any]:
    package = entry.package
    fix = f"fixed in {entry.fixed_version}" if entry.fixed_version else "no fix released"
    return {
        "ruleId": entry.id,
        "ruleIndex": rule_index[entry.id],
        "level": _vulnerability_level(entry),
        "message": {
            "text": f"{entry.id}: {entry.source_name} ({package.manager} {package.name} "
            f"{package.version}): {fix}"
        },
        "locations": [
            {
                "logicalLocations": [
                    {
                        "name": package.name,
                        "fullyQualifiedName": f"{package.manager}:{package.name}@{package.version}",
                        "kind": "package",
                    }
                ]
            }
        ],
        "properties": entry.to_dict(),
    }


def _notification(
    problem: Problem, rule_index: dict[str, int], kinds: dict[str, int]
) -> dict[str, Any]:
    notification: dict[str, Any] = {
        "level": "error" if problem.unverified else "warning",
        "message": {"text": f"{problem.kind}: {problem.message}"},
        "descriptor": {"id": problem.kind, "index": kinds[problem.kind]},
        "properties": problem.to_dict(),
    }
    if problem.path is not None:
        notification["locations"] = [
            {
                "physicalLocation": {
                    "artifactLocation": {"uri": _uri(problem.path), "uriBaseId": ROOT_BASE}
                }
            }
        ]
    if problem.check is not None and problem.check in rule_index:
        notification["associatedRule"] = {
            "id": problem.check,
            "index": rule_index[problem.check],
        }
    return notification


def to_sarif(report: Report) -> dict[str, Any]:
    """The SARIF log of one report, as JSON-ready data."""
    rules = _rules(report) + _vulnerability_rules(report)
    rule_index = {rule["id"]: index for index, rule in enumerate(rules)}
    kinds: dict[str, int] = {
        kind: index for index, kind in enumerate(dict.fromkeys(p.kind for p in report.problems))
    }
    invocation: dict[str, Any] = {
        "executionSuccessful": report.complete,
        "toolExecutionNotifications": [
            _notification(problem, rule_index, kinds) for problem in report.problems
        ],
    }
    if report.notices:
        invocation["toolConfigurationNotifications"] = [
            {"level": "note", "message": {"text": notice}} for notice in report.notices
        ]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "scan-root",
                "version": report.scanner_version,
                "semanticVersion": report.scanner_version,
                "rules": rules,
                "notifications": [
                    {"id": kind, "shortDescription": {"text": _PROBLEMS.get(kind, kind)}}
                    for kind in kinds
                ],
            }
        },
        # The scan's id as the run's GUID: SARIF 2.1.0's runAutomationDetails.guid, a unique id
        # of the run in the form of a GUID (the schema's pattern admits a UUID4).
        "automationDetails": {"guid": report.scan_id},
        "invocations": [invocation],
        "results": [_result(finding, rule_index) for finding in report.findings]
        + [_vulnerability_result(entry, rule_index) for entry in report.vulnerabilities or ()],
        "properties": {
            "scan_id": report.scan_id,
            "target": {"kind": report.target_kind, "root": report.root, **report.target_details},
            "implementation": report.implementation,
            "complete": report.complete,
            "notices": list(report.notices),
            "suppressed": report.suppressed,  # findings a policy rule ignored
            "stats": report.stats.to_dict(),
        },
    }
    # Where `ROOT` is on this machine: known for a directory or the live root, not for an image
    # (its layers were unpacked into a temporary directory that no longer exists).
    if report.target_kind in ("rootfs", "task"):
        # A relative root is relative to this process's directory, the one it was scanned from.
        base = quote(os.fsencode(os.path.abspath(report.root)).rstrip(b"/") + b"/", safe="/")
        run["originalUriBaseIds"] = {
            ROOT_BASE: {
                "uri": f"file://{base}",
                "description": {"text": "/ inside the scanned container"},
            }
        }
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def render(report: Report, color: bool = False) -> str:
    return json_safe(json.dumps(to_sarif(report), indent=2, ensure_ascii=False)) + "\n"
