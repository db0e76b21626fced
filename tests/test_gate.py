"""Exit codes: the gate function on built reports, and every code x format x gate option of the CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import findings_tree
import pytest
from child import run_cli

from scanner import cli
from scanner.gate import (
    EXIT_BLOCKED,
    EXIT_CLEAN,
    EXIT_FINDINGS,
    EXIT_INCOMPLETE,
    EXIT_USAGE,
    exit_code,
)
from scanner.report import Finding, Problem, Report, Severity

FORMATS = ("table", "json", "sarif")


def _finding(severity: Severity, **changes: Any) -> Finding:
    base = Finding(check="448", title="t", severity=severity, kind="modified", path=b"usr/bin/x")
    return replace(base, **changes)


def _report(*findings: Finding, incomplete: bool = False) -> Report:
    problems = [Problem(kind="could-not-verify", message="m", path=b"x")] if incomplete else []
    return Report(
        root="/r",
        scanner_version="0",
        implementation="python",
        checks=("448",),
        findings=list(findings),
        problems=problems,
    )


L, M, H, C = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL

# (findings, incomplete) -> codes for: no option, --fail-on low/medium/high/critical, --exit-zero
GATE_TABLE = [
    ((), False, (0, 0, 0, 0, 0, 0)),
    ((), True, (3, 3, 3, 3, 3, 0)),
    ((_finding(L),), False, (1, 1, 0, 0, 0, 0)),
    ((_finding(M),), False, (1, 1, 1, 0, 0, 0)),
    ((_finding(H),), False, (1, 1, 1, 1, 0, 0)),
    ((_finding(C),), False, (1, 1, 1, 1, 1, 0)),
    ((_finding(M),), True, (1, 1, 1, 3, 3, 0)),
    ((_finding(L), _finding(H)), False, (1, 1, 1, 1, 0, 0)),
    ((_finding(C, baselined=True),), False, (0, 0, 0, 0, 0, 0)),
    ((_finding(C, baselined=True),), True, (3, 3, 3, 3, 3, 0)),
    ((_finding(C, baselined=True), _finding(L)), False, (1, 1, 0, 0, 0, 0)),
    ((_finding(L, effect="block"),), False, (4, 4, 4, 4, 4, 0)),
    ((_finding(L, effect="block", baselined=True),), True, (4, 4, 4, 4, 4, 0)),
    ((_finding(H, effect="alert", rule="r"),), False, (1, 1, 1, 1, 0, 0)),
]


@pytest.mark.parametrize(("findings", "incomplete", "codes"), GATE_TABLE)
def test_gate_table(
    findings: tuple[Finding, ...], incomplete: bool, codes: tuple[int, ...]
) -> None:
    report = _report(*findings, incomplete=incomplete)
    got = (
        exit_code(report),
        *(exit_code(report, fail_on=severity) for severity in (L, M, H, C)),
        exit_code(report, exit_zero=True),
    )
    assert got == codes


# --- the command line, in a child process --------------------------------------------------

GATES: dict[str, tuple[str, ...]] = {
    "none": (),
    "fail-on-low": ("--fail-on", "low"),
    "fail-on-medium": ("--fail-on", "medium"),
    "fail-on-high": ("--fail-on", "high"),
    "fail-on-critical": ("--fail-on", "critical"),
    "exit-zero": ("--exit-zero",),
    "baseline": ("--baseline", "{baseline}"),  # absent: written from this scan
}
# scenario -> expected code per gate, in GATES order
SCENARIOS: dict[str, tuple[int, ...]] = {
    # untampered
    "clean": (0, 0, 0, 0, 0, 0, 0),
    # every check finds something, up to critical (426 by name and digest); all verified
    "every-check": (1, 1, 1, 1, 1, 0, 0),
    # one changed document (medium), and a listed file behind a symlink loop
    "medium-incomplete": (1, 1, 1, 3, 3, 0, 3),
    # one changed document (medium) that a policy rule blocks: 4, a baseline notwithstanding
    "blocked": (4, 4, 4, 4, 4, 0, 4),
    # the root does not exist: exit 2, whatever the gate (and no baseline is written)
    "no-target": (2, 2, 2, 2, 2, 2, 2),
}
# A policy with one rule for every target: block every check.
BLOCK_ALL = 'version: 1\nrules:\n  - name: no-tampering\n    effects: {"*": block}\n'


def _blocked_tree(base: Path) -> findings_tree.Tree:
    tree = findings_tree.build(base, tamper=(findings_tree.DOCUMENT,))
    policy = base / "policy.yaml"
    policy.write_text(BLOCK_ALL)
    return findings_tree.Tree(tree.root, (*tree.options, "--policy", str(policy)))


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, findings_tree.Tree]:
    made = tmp_path_factory.mktemp("gate")
    return {
        "clean": findings_tree.build(made / "clean"),
        "every-check": findings_tree.build(made / "every", tamper=findings_tree.OWNED, extras=True),
        "medium-incomplete": findings_tree.build(
            made / "medium", tamper=(findings_tree.DOCUMENT,), unverifiable=True
        ),
        "blocked": _blocked_tree(made / "blocked"),
        "no-target": findings_tree.Tree(made / "absent", ("--no-process-env",)),
    }


def _check_output(output_format: str, stdout: str, baselined: bool) -> None:
    """The report is well-formed in its format, and says what the baseline did."""
    if output_format == "table":
        assert "finding" in stdout.splitlines()[-1]
        assert ("Notices: 1" in stdout) is baselined
        last = stdout.splitlines()[-1]
        if baselined and not last.startswith("no findings"):  # every finding line is marked
            count = int(last.split(" finding(s)")[0])
            assert f"({count} baselined)" in last
            assert sum("baselined]" in line for line in stdout.splitlines()) == count
        return
    document = json.loads(stdout)
    if output_format == "json":
        findings = document["findings"]
        assert all(f.get("baselined", False) is baselined for f in findings)
        assert bool(document["notices"]) is baselined
        return
    assert document["version"] == "2.1.0"
    for result in document["runs"][0]["results"]:
        assert result["properties"]["baselined"] is baselined


@pytest.mark.parametrize("gate", list(GATES))
@pytest.mark.parametrize("output_format", FORMATS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_exit_code_matrix(
    trees: dict[str, findings_tree.Tree],
    tmp_path: Path,
    scenario: str,
    output_format: str,
    gate: str,
) -> None:
    tree = trees[scenario]
    baseline = tmp_path / "baseline.json"
    options = [part.format(baseline=baseline) for part in GATES[gate]]
    result = run_cli(tmp_path, str(tree.root), *tree.options, "--format", output_format, *options)
    expected = SCENARIOS[scenario][list(GATES).index(gate)]
    assert result.returncode == expected, result.stderr
    if expected == EXIT_USAGE:
        assert result.stderr.startswith("scan-root: ") and result.stdout == ""
        assert not baseline.exists()
        return
    _check_output(output_format, result.stdout, baselined=gate == "baseline")
    if gate == "baseline":
        written = json.loads(baseline.read_text())
        assert written["schema"] == 1 and written["scanner"]["name"] == "scan-root"
        assert (written["entries"] == []) is (scenario == "clean")


@pytest.mark.parametrize("output_format", FORMATS)
def test_blocked_is_shown_in_every_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], output_format: str
) -> None:
    tree = _blocked_tree(tmp_path)
    assert cli.main([str(tree.root), *tree.options, "--format", output_format]) == EXIT_BLOCKED
    out = capsys.readouterr().out
    if output_format == "table":
        assert "[rule: no-tampering; BLOCK]" in out and "BLOCKED by 1" in out
    elif output_format == "json":
        (finding,) = json.loads(out)["findings"]
        assert (finding["rule"], finding["effect"], finding["severity"]) == (
            "no-tampering",
            "block",
            "medium",
        )
    else:
        (result,) = json.loads(out)["runs"][0]["results"]
        assert result["level"] == "error"  # medium, but blocked
        assert result["properties"]["effect"] == "block"


@pytest.mark.parametrize(
    "argv",
    [
        ["--update-baseline", "/"],
        ["--fail-on", "severe", "/"],
        ["--fail-on", "low", "--exit-zero", "/"],
    ],
    ids=["update-without-baseline", "unknown-severity", "fail-on-and-exit-zero"],
)
def test_gate_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == EXIT_USAGE


def test_exit_constants_are_the_documented_ones() -> None:
    assert (EXIT_CLEAN, EXIT_FINDINGS, EXIT_USAGE, EXIT_INCOMPLETE, EXIT_BLOCKED) == (0, 1, 2, 3, 4)
    assert (cli.EXIT_CLEAN, cli.EXIT_BLOCKED) == (0, 4)
    # The table in full lives in docs/report.md (the README says each code in a sentence).
    table = (Path(__file__).resolve().parent.parent / "docs" / "report.md").read_text()
    for code in range(5):
        assert f"| {code} |" in table
        assert f"  {code}  " in cli.EPILOG
