"""Rule order: first enabled matching rule per check, default last, severity, Fargate blocks."""

from __future__ import annotations

from typing import Any

import pytest

import scanner
from scanner.errors import UsageError
from scanner.policy import DEFAULT_RULE_NAME, Effect, Policy, apply_policy, decide, parse_policy
from scanner.policy.evaluate import target_of
from scanner.report import Finding, Report, Severity

TASK_ID = "8f03e41243824aea923aca126495f665"

COLLECTIONS = """\
version: 1
collections:
  - name: web-tasks
    hosts: ["web-*", "-web-canary*"]
  - name: nginx
    images: ["*nginx*"]
  - name: payments
    images: ["*nginx*"]
    labels: ["team=payments"]
"""


def policy(rules: str, collections: str = COLLECTIONS) -> Policy:
    return parse_policy(collections + "rules:\n" + rules, "test.yaml")


def finding(check: str, path: bytes = b"srv/x", severity: Severity = Severity.HIGH) -> Finding:
    return Finding(check=check, title=f"check {check}", severity=severity, kind="k", path=path)


def task_report(*checks: str, family: str = "web-api", kind: str = "task") -> Report:
    """A report as _identify leaves it for a Fargate task's own root."""
    report = Report(
        root="/",
        scanner_version="test",
        implementation="python",
        checks=("424", "425", "426", "448"),
        findings=[finding(check) for check in checks],
        target_kind=kind,
    )
    report.target_details.update(
        host=TASK_ID,
        task={"arn": f"arn:aws:ecs:us-west-2:1:task/default/{TASK_ID}", "id": TASK_ID,
              "family": family, "launch_type": "FARGATE"},
        container={"name": "app", "docker_id": f"{TASK_ID}-1", "image": "example/nginx:1.25"},
    )  # fmt: skip
    return report


def image_report(*checks: str, labels: dict[str, str] | None = None) -> Report:
    report = Report(
        root="image.tar",
        scanner_version="test",
        implementation="python",
        checks=("424", "425", "426", "448"),
        findings=[finding(check) for check in checks],
        target_kind="image",
    )
    report.target_details.update(
        host="ci-runner",
        image={"name": "example/nginx:1.25", "tags": ["example/nginx:1.25"], "id": "sha256:ab",
               "digest": None, "labels": labels or {}},
    )  # fmt: skip
    return report


def effects(report: Report) -> list[tuple[str, str | None, str | None]]:
    return [(f.check, f.rule, f.effect) for f in report.findings]


def test_first_matching_rule_wins() -> None:
    p = policy(
        """\
  - name: first
    collections: [web-tasks]
    effects: {"425": ignore}
  - name: second
    collections: [web-tasks]
    effects: {"425": block, "*": alert}
"""
    )
    report = task_report("425", "448")
    apply_policy(report, p)
    assert effects(report) == [("448", "second", "alert")]  # 425 ignored by `first`
    assert report.suppressed == 1
    assert any("rule 'first' (test.yaml:11) ignored 1 finding(s) of check 425" in n
               for n in report.notices)  # fmt: skip


def test_rule_not_naming_a_check_does_not_decide_it() -> None:
    p = policy(
        """\
  - name: keys-only
    effects: {"425": alert}
  - name: rest
    effects: {"*": ignore}
"""
    )
    assert decide(p, target_of(task_report()), "425").rule == "keys-only"
    assert decide(p, target_of(task_report()), "448").rule == "rest"
    assert decide(p, target_of(task_report()), "448").effect is Effect.IGNORE


def test_rule_for_other_targets_is_passed_over() -> None:
    p = policy(
        """\
  - name: web
    collections: [web-tasks]
    effects: {"*": ignore}
  - name: everything
    effects: {"*": block}
"""
    )
    report = image_report("425")
    apply_policy(report, p)
    assert effects(report) == [("425", "everything", "block")]
    canary = task_report("425", family="web-canary-2")  # excluded from web-tasks
    apply_policy(canary, p)
    assert effects(canary) == [("425", "everything", "alert")]  # a Fargate task: not blocked


def test_disabled_rule_is_skipped() -> None:
    p = policy(
        """\
  - name: disabled-rule
    enabled: false
    effects: {"*": ignore}
  - name: enabled-rule
    effects: {"*": block}
"""
    )
    report = image_report("448")
    apply_policy(report, p)
    assert effects(report) == [("448", "enabled-rule", "block")]
    assert report.suppressed == 0


def test_default_rule_applies_last() -> None:
    p = policy(
        """\
  - name: payments-only
    collections: [payments]
    effects: {"*": block}
"""
    )
    report = image_report("425", "426")  # no team=payments label: payments does not match
    apply_policy(report, p)
    assert effects(report) == [
        ("425", DEFAULT_RULE_NAME, "alert"),
        ("426", DEFAULT_RULE_NAME, "alert"),
    ]
    labelled = image_report("425", labels={"team": "Payments"})  # values match case-insensitively
    apply_policy(labelled, p)
    assert effects(labelled) == [("425", "payments-only", "block")]


def test_empty_policy_alerts_on_everything() -> None:
    report = image_report("424", "448")
    apply_policy(report, parse_policy("version: 1\n", "empty.yaml"))
    assert effects(report) == [("424", "default", "alert"), ("448", "default", "alert")]
    assert report.notices == [] and report.suppressed == 0


def test_severity_override() -> None:
    p = policy(
        """\
  - name: escalate
    collections: [nginx]
    effects: {"448": alert, "*": alert}
    severity: {"448": critical, "*": low}
"""
    )
    report = image_report("448", "425")
    apply_policy(report, p)
    assert [(f.check, f.severity) for f in report.findings] == [
        ("448", Severity.CRITICAL),
        ("425", Severity.LOW),
    ]
    assert report.to_dict()["findings"][0]["severity"] == "critical"
    assert report.to_dict()["findings"][0]["rule"] == "escalate"


@pytest.mark.parametrize("kind", ["task", "rootfs"])  # its own root, or a directory in a task
def test_block_on_fargate_task_becomes_alert_with_notice(kind: str) -> None:
    p = policy(
        """\
  - name: block-web
    collections: [web-tasks]
    effects: {"425": block}
"""
    )
    report = task_report("425", "425", "448", kind=kind)
    apply_policy(report, p)
    assert effects(report) == [
        ("425", "block-web", "alert"),
        ("425", "block-web", "alert"),
        ("448", "default", "alert"),
    ]
    (notice,) = report.notices
    assert "rule 'block-web' (test.yaml:11)" in notice
    assert "block on check 425 not applied to Fargate task web-api" in notice
    assert (
        f"({TASK_ID}) (a Fargate task cannot be blocked); 2 finding(s) reported as alert" in notice
    )
    assert report.to_dict()["notices"] == [notice]


def test_block_on_fargate_task_without_findings_still_says_so() -> None:
    p = policy('  - name: block-all\n    effects: {"*": block}\n')
    report = task_report()
    apply_policy(report, p)
    assert len(report.notices) == 4  # one per check the scan ran
    assert all("block-all" in n and "0 finding(s) reported as alert" in n for n in report.notices)


def test_block_on_an_image_stays_block_even_when_scanned_inside_a_task() -> None:
    p = policy('  - name: block-nginx\n    collections: [nginx]\n    effects: {"*": block}\n')
    report = image_report("426")
    report.target_details["task"] = task_report().target_details["task"]  # CI runs in ECS
    apply_policy(report, p)
    assert effects(report) == [("426", "block-nginx", "block")]
    assert report.notices == []


@pytest.mark.parametrize(
    ("hosts", "matches"),
    [
        ('["web-api"]', True),  # the task family (task name)
        ('["web-*"]', True),
        (f'["{TASK_ID}"]', True),  # the task id
        ('["8f03e412*"]', True),
        ('["web-api-*"]', False),
        ('["*", "-web-api"]', False),  # excluding the family excludes the task
        (f'["*", "-{TASK_ID}"]', False),
    ],
)
def test_fargate_hosts_match_family_or_task_id(hosts: str, matches: bool) -> None:
    p = parse_policy(
        f"version: 1\ncollections:\n  - name: t\n    hosts: {hosts}\n"
        'rules:\n  - name: r\n    collections: [t]\n    effects: {"*": ignore}\n',
        "t.yaml",
    )
    report = task_report("448")
    apply_policy(report, p)
    assert (report.findings == []) is matches


def test_fields_are_anded() -> None:
    text = (
        'version: 1\ncollections:\n  - name: c\n    hosts: ["web-*"]\n    containers: [{c}]\n'
        'rules:\n  - name: r\n    collections: [c]\n    effects: {{"*": ignore}}\n'
    )
    matching = task_report("448")
    apply_policy(matching, parse_policy(text.format(c="app"), "c.yaml"))
    assert matching.findings == []
    other = task_report("448")
    apply_policy(other, parse_policy(text.format(c="sidecar"), "c.yaml"))
    assert effects(other) == [("448", "default", "alert")]


def test_custom_check_ids_are_decided_like_builtin_ones() -> None:
    p = parse_policy(
        "version: 1\nrules:\n  - name: r\n    effects: {9001: block}\n"
        "custom_checks:\n  - id: 9001\n    name: n\n    severity: low\n    description: d\n"
        "    script: 'exit 0'\n",
        "c.yaml",
    )
    report = image_report("9001", "448")
    apply_policy(report, p)
    assert effects(report) == [("9001", "r", "block"), ("448", "default", "alert")]


def test_hand_built_policy_with_unknown_collection_is_an_error() -> None:
    from scanner.policy import Rule

    bad = Policy(1, {}, (Rule("r", ("nope",), {"*": Effect.IGNORE}),))
    with pytest.raises(UsageError, match="unknown collection 'nope'"):
        apply_policy(image_report("448"), bad)


def test_iter_scan_refuses_a_policy(tmp_path: Any) -> None:
    with pytest.raises(UsageError, match="scan_root"):
        list(scanner.iter_scan(tmp_path, policy=parse_policy("version: 1\n")))
