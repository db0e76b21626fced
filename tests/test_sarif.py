"""SARIF 2.1.0 output, validated against the official schema, for findings of every check."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes

import findings_tree
import imagebuilder
import jsonschema
import pytest
from child import child_env
from jsonschema.validators import validator_for

import scanner
from scanner.checks import BUILTIN_CHECKS, CustomCheckSpec, describe_checks, select_checks
from scanner.output import FORMATS
from scanner.output.sarif import to_sarif
from scanner.report import CheckInfo, Finding, Problem, ProblemKind, Report, Severity
from scanner.scan import scan_image

SHARED = Path(
    os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")
)
SCHEMA_PATH = SHARED / "schemas" / "sarif-schema-2.1.0.json"


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    if not SCHEMA_PATH.is_file():
        pytest.skip(f"../shared is absent ({SCHEMA_PATH} not found)")
    schema = json.loads(SCHEMA_PATH.read_text())
    cls = validator_for(schema)  # the schema's own draft (its "$schema" says draft-04)
    cls.check_schema(schema)
    # Every format the schema uses must really be checked: jsonschema skips a format silently
    # when the library behind it (rfc3986-validator, rfc3339-validator) is not installed, and
    # FormatChecker() knows them all, whereas a draft-04 checker leaves out "uri-reference".
    checker = jsonschema.FormatChecker()
    used = set(re.findall(r'"format":\s*"([^"]+)"', SCHEMA_PATH.read_text()))
    assert used == {"uri", "uri-reference", "date-time"}
    assert used <= set(checker.checkers), f"unchecked formats: {used - set(checker.checkers)}"
    return cls(schema, format_checker=checker)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """A real scan with findings of 448, 424, 425, 426 and a problem; plus a custom-check
    finding (9001) made the way a custom check makes one, and a policy's rule/effect and a
    baseline mark on some findings."""
    tree = findings_tree.build(
        tmp_path_factory.mktemp("sarif"),
        tamper=findings_tree.OWNED,
        extras=True,
        unverifiable=True,
    )
    scanned = tree.scan()
    custom = Finding(
        check="9001",
        title="No world-writable /etc/passwd",
        severity=Severity.LOW,
        kind="custom-check-failed",
        path=b"",
        detail="/etc/passwd is world-writable",
        rule="prod-tasks",
        effect="alert",
    )
    findings = []
    for finding in scanned.findings:
        if finding.path == findings_tree.DOCUMENT:  # medium, but the policy blocks it
            finding = replace(finding, rule="no-tampering", effect="block")
        if finding.path == findings_tree.SPACED:
            finding = replace(finding, baselined=True)
        findings.append(finding)
    return replace_report(scanned, findings=[*findings, custom], checks=(*scanned.checks, "9001"))


def replace_report(report: Report, **changes: Any) -> Report:
    fields = {name: getattr(report, name) for name in Report.__dataclass_fields__}
    return Report(**{**fields, **changes})


def _sarif(report: Report) -> dict[str, Any]:
    return json.loads(FORMATS["sarif"](report, False))


def test_every_check_is_found_and_the_log_validates(
    report: Report, validator: jsonschema.protocols.Validator
) -> None:
    assert {f.check for f in report.findings} == {"448", "424", "425", "426", "9001"}
    log = _sarif(report)
    validator.validate(log)
    run = log["runs"][0]
    assert run["automationDetails"]["guid"] == report.scan_id  # the schema checks its pattern
    rules = run["tool"]["driver"]["rules"]
    assert [rule["id"] for rule in rules] == list(report.checks)
    assert {result["ruleId"] for result in run["results"]} == set(report.checks)
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
    assert len(run["results"]) == len(report.findings)


@pytest.mark.parametrize("check", ["448", "424", "425", "426", "9001"])
def test_findings_of_each_check_validate_alone(
    report: Report, validator: jsonschema.protocols.Validator, check: str
) -> None:
    alone = replace_report(
        report, findings=[f for f in report.findings if f.check == check], problems=[]
    )
    log = _sarif(alone)
    validator.validate(log)
    assert log["runs"][0]["results"] and {r["ruleId"] for r in log["runs"][0]["results"]} == {check}


def test_empty_report_validates(validator: jsonschema.protocols.Validator) -> None:
    empty = Report(
        root="/", scanner_version=scanner.__version__, implementation="python", checks=()
    )
    log = _sarif(empty)
    validator.validate(log)
    run = log["runs"][0]
    assert run["automationDetails"]["guid"] == run["properties"]["scan_id"] == empty.scan_id
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []
    assert run["invocations"][0]["executionSuccessful"] is True
    assert run["properties"]["suppressed"] == 0 and run["properties"]["notices"] == []


def test_clean_scan_validates_with_every_builtin_rule(
    tmp_path: Path, validator: jsonschema.protocols.Validator
) -> None:
    clean = findings_tree.build(tmp_path).scan()
    assert clean.findings == [] and clean.complete
    log = _sarif(clean)
    validator.validate(log)
    rules = log["runs"][0]["tool"]["driver"]["rules"]
    assert {rule["id"] for rule in rules} == {check.id for check in BUILTIN_CHECKS}
    for rule in rules:
        assert rule["shortDescription"]["text"] and rule["name"].isidentifier()
        assert rule["defaultConfiguration"]["level"] == "error"  # each check's worst is high+


def test_rules_come_from_the_checks_the_report_describes(
    validator: jsonschema.protocols.Validator,
) -> None:
    # The writer knows no checks: a clean run's rules (a custom check's too, which used to be
    # "check 9001") and their default levels are what the report says of the checks that ran.
    custom = CustomCheckSpec(
        id="9001", name="No stray cron jobs", severity=Severity.LOW, description="d", script=b""
    )
    selected = select_checks(["426", "9001"], [custom])
    clean = Report(
        root="/",
        scanner_version=scanner.__version__,
        implementation="python",
        checks=tuple(check.id for check in selected),
        check_info=describe_checks(selected),
    )
    log = _sarif(clean)
    validator.validate(log)
    rules = {rule["id"]: rule for rule in log["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["426"]["shortDescription"]["text"] == next(
        check.title for check in BUILTIN_CHECKS if check.id == "426"
    )
    assert rules["426"]["properties"]["severity"] == "critical"
    assert rules["9001"]["shortDescription"]["text"] == "No stray cron jobs"
    assert rules["9001"]["name"] == "NoStrayCronJobs"
    assert rules["9001"]["properties"]["severity"] == "medium"  # none found, no worst declared
    # What the report says wins: the writer has no table of its own to disagree with.
    renamed = replace_report(clean, check_info=(CheckInfo("426", "Miners", Severity.LOW),))
    rules = {rule["id"]: rule for rule in _sarif(renamed)["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["426"]["shortDescription"]["text"] == "Miners"
    assert rules["426"]["defaultConfiguration"]["level"] == "note"


def test_the_validator_can_fail(report: Report, validator: jsonschema.protocols.Validator) -> None:
    """Both the structure and the formats are enforced, so a passing validation means something."""
    log = _sarif(report)
    log["runs"][0]["results"][0]["level"] = "fatal"
    assert not validator.is_valid(log)
    log = _sarif(report)
    located = next(r for r in log["runs"][0]["results"] if "locations" in r)
    located["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] = "usr/bin/my tool"
    assert not validator.is_valid(log)  # a raw space is not a URI reference
    log = _sarif(report)
    log["$schema"] = "not a uri"
    assert not validator.is_valid(log)


def _result(log: dict[str, Any], check: str, path: str | None = None) -> dict[str, Any]:
    for result in log["runs"][0]["results"]:
        if result["ruleId"] == check and (path is None or result["properties"]["path"] == path):
            return result
    raise AssertionError(f"no {check} result for {path}")


def test_locations_uris_and_raw_paths(report: Report) -> None:
    log = _sarif(report)
    run = log["runs"][0]
    base = run["originalUriBaseIds"]["ROOT"]["uri"]
    assert base.startswith("file:///") and base.endswith("/")
    for raw, uri in [
        (findings_tree.BINARY, "usr/bin/tool"),
        (findings_tree.SPACED, "usr/bin/my%20tool"),
        (findings_tree.LATIN1, "usr/bin/caf%E9"),
    ]:
        shown = "/" + raw.decode("utf-8", "backslashreplace")
        result = _result(log, "448", shown)
        artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
        assert artifact == {"uri": uri, "uriBaseId": "ROOT"}
        assert unquote_to_bytes(uri) == raw  # the raw name survives
        package = result["locations"][0]["logicalLocations"][0]
        assert package == {
            "name": "tool",
            "fullyQualifiedName": "dpkg:tool@1.0-1",
            "kind": "package",
        }
        assert result["properties"]["expected"] != result["properties"]["actual"]
    assert _result(log, "448", "/usr/bin/caf\\xe9")["properties"]["path_hex"] == (
        findings_tree.LATIN1.hex()
    )
    key = _result(log, "425")
    assert key["locations"][0]["physicalLocation"]["region"] == {"startLine": 3}
    assert (
        key["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "srv/app/deploy.key"
    )
    environment = _result(log, "424")
    assert environment["locations"] == [
        {"logicalLocations": [{"name": "task-definition:web/container:app", "kind": "resource"}]}
    ]
    assert "locations" not in _result(log, "9001")


def test_levels_rules_effects_and_baseline_marks(report: Report) -> None:
    log = _sarif(report)
    assert _result(log, "426")["level"] == "error"  # critical
    assert _result(log, "424")["level"] == "warning"  # medium
    assert _result(log, "9001")["level"] == "note"  # low
    blocked = _result(log, "448", "/usr/share/doc/tool/copyright")
    assert blocked["level"] == "error"  # medium, but blocked
    assert blocked["properties"]["rule"] == "no-tampering"
    assert blocked["properties"]["effect"] == "block"
    spaced = _result(log, "448", "/usr/bin/my tool")
    assert spaced["properties"]["baselined"] is True
    assert spaced["suppressions"][0]["kind"] == "external"
    assert _result(log, "448", "/usr/bin/tool")["properties"]["baselined"] is False
    assert "suppressions" not in _result(log, "448", "/usr/bin/tool")
    rules = {rule["id"]: rule for rule in log["runs"][0]["tool"]["driver"]["rules"]}
    assert rules["426"]["properties"]["severity"] == "critical"
    assert rules["9001"]["shortDescription"]["text"] == "No world-writable /etc/passwd"
    assert rules["9001"]["defaultConfiguration"]["level"] == "note"


def test_problems_and_notices_are_notifications(report: Report) -> None:
    noticed = replace_report(report, notices=["baseline written to b.json: 0 entries"])
    log = _sarif(noticed)
    invocation = log["runs"][0]["invocations"][0]
    assert invocation["executionSuccessful"] is False and not report.complete
    problem = next(
        n
        for n in invocation["toolExecutionNotifications"]
        if n["descriptor"]["id"] == "could-not-verify"
    )
    assert problem["level"] == "error"
    described = log["runs"][0]["tool"]["driver"]["notifications"][problem["descriptor"]["index"]]
    assert described["id"] == "could-not-verify" and described["shortDescription"]["text"]
    assert problem["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "loop/tool"
    assert problem["associatedRule"]["id"] == "448"
    assert problem["properties"]["errno"] == 40
    assert invocation["toolConfigurationNotifications"] == [
        {"level": "note", "message": {"text": "baseline written to b.json: 0 entries"}}
    ]


def test_no_secret_material(report: Report) -> None:
    text = FORMATS["sarif"](report, False)
    assert findings_tree.TOKEN not in text
    key = (Path(report.root) / "srv/app/deploy.key").read_text().splitlines()
    body = [line for line in key if not line.startswith(("#", "-----"))]
    for line in body:
        assert line[:16] not in text


def test_to_sarif_is_plain_json_data(report: Report) -> None:
    assert json.loads(json.dumps(to_sarif(report))) == to_sarif(report)
    assert os.fspath(report.root) in json.dumps(to_sarif(report))


def test_cli_sarif_file_validates(
    tmp_path: Path, validator: jsonschema.protocols.Validator
) -> None:
    """`python -m scanner.cli --format sarif --output FILE` on every check, incomplete too."""
    tree = findings_tree.build(tmp_path, tamper=findings_tree.OWNED, extras=True, unverifiable=True)
    out = tmp_path / "report.sarif"
    env = child_env()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scanner.cli",
            str(tree.root),
            *tree.options,
            "--format",
            "sarif",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    log = json.loads(out.read_text())
    validator.validate(log)
    assert {r["ruleId"] for r in log["runs"][0]["results"]} == {"448", "424", "425", "426"}
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_image_target_validates_without_a_host_base(
    tmp_path: Path, validator: jsonschema.protocols.Validator
) -> None:
    """An image's root was a temporary directory: no `originalUriBaseIds` pointing at it."""
    tree = findings_tree.build(tmp_path / "tree", tamper=(findings_tree.SPACED,))
    layer = imagebuilder.tar_tree(tree.root, tmp_path / "layer.tar")
    config = imagebuilder.image_config(env=[f"GITHUB_TOKEN={findings_tree.TOKEN}"])
    imagebuilder.write_oci_layout(tmp_path / "layout", [layer], config)
    scanned = scan_image(tmp_path / "layout", process_env=False)
    assert {f.check for f in scanned.findings} == {"448", "424"}
    log = _sarif(scanned)
    validator.validate(log)
    run = log["runs"][0]
    assert "originalUriBaseIds" not in run and run["properties"]["target"]["kind"] == "image"
    spaced = _result(log, "448")
    assert spaced["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == (
        "usr/bin/my%20tool"
    )
    assert findings_tree.TOKEN not in json.dumps(log)


@pytest.mark.parametrize("kind", list(ProblemKind))
def test_every_problem_kind_has_its_own_description(kind: ProblemKind) -> None:
    # A kind added without one was described by its bare id ("state": "state").
    report = Report(root="/r", scanner_version="0", implementation="py", checks=())
    report.problems.append(Problem(kind=kind, message="m"))
    (descriptor,) = to_sarif(report)["runs"][0]["tool"]["driver"]["notifications"]
    assert descriptor["id"] == kind
    assert descriptor["shortDescription"]["text"] not in ("", kind.value)
