"""Problem kinds decide completeness in one place; finding kinds and effects are enums too."""

from __future__ import annotations

import enum
import json
import os
import time
from pathlib import Path
from typing import Any

import findings_tree
import pytest
from trees import make_dpkg_root

import scanner
from scanner import cli, state
from scanner.gate import EXIT_BLOCKED, EXIT_CLEAN, EXIT_INCOMPLETE, exit_code
from scanner.kinds import _DecidedKind, leaves_incomplete
from scanner.output import sarif, table
from scanner.policy import Effect, apply_policy, parse_policy
from scanner.report import Finding, FindingKind, Problem, ProblemKind, Report, Severity

# The decision of every kind, written out: changing one is a deliberate act that shows here.
INCOMPLETE = {
    "vulnerabilities",  # packages not checked against the advisory database
    "could-not-verify",
    "package-db",
    "walk",
    "content-skipped",
    "custom-check-error",
    "custom-check-skipped",
    "image-changed",
    "image-member-skipped",
    "container",
}
COMPLETE = {
    "advisories",  # the console's advisory database not fetched: the cached one ran
    "no-package-db",
    "input",
    "image",
    "priority",
    "state",
    "task-metadata",
    "delivery",
    "policy",
    "truncated",
}


def _report(*problems: Problem, findings: tuple[Finding, ...] = ()) -> Report:
    return Report(
        root="/r",
        scanner_version="0",
        implementation="python",
        checks=("448",),
        findings=list(findings),
        problems=list(problems),
    )


@pytest.mark.parametrize("kind", list(ProblemKind), ids=str)
def test_every_problem_kind_decides_completeness(kind: ProblemKind) -> None:
    assert type(kind.incomplete) is bool
    assert str(kind) in (INCOMPLETE if kind.incomplete else COMPLETE)
    report = _report(Problem(kind=kind, message="m"))
    assert report.complete is not kind.incomplete
    assert exit_code(report) == (EXIT_INCOMPLETE if kind.incomplete else EXIT_CLEAN)


def test_the_decision_table_names_every_kind_and_no_other() -> None:
    assert {str(kind) for kind in ProblemKind} == INCOMPLETE | COMPLETE
    assert not INCOMPLETE & COMPLETE


@pytest.mark.parametrize("member", ['NEW = "new"', 'NEW = "new", None', 'NEW = "new", 1'])
def test_a_problem_kind_without_a_decision_cannot_be_defined(member: str) -> None:
    """A new member that does not say True or False fails when its class is created (so at the
    import of scanner.kinds: every test fails), not at the first scan that meets it."""
    source = f"class Kinds(_DecidedKind):\n    OLD = 'old', True\n    {member}\n"
    with pytest.raises(TypeError, match="'new': incomplete must be True or False"):
        exec(source, {"_DecidedKind": _DecidedKind})


def test_a_problem_kind_with_its_decision_is_accepted() -> None:
    namespace: dict[str, Any] = {"_DecidedKind": _DecidedKind}
    exec("class Kinds(_DecidedKind):\n    NEW = 'new', False\n", namespace)
    assert namespace["Kinds"]("new").incomplete is False


@pytest.mark.parametrize("kind", ["brand-new-kind", "Walk", "could-not-verify ", "", "missing"])
def test_an_unknown_problem_kind_is_never_counted_as_verified(kind: str) -> None:
    """A kind no ProblemKind names (a caller's own string, a report read back) leaves the report
    incomplete: exit 3, `complete: false`, a SARIF error. It used to count as verified (exit 0)."""
    problem = Problem(kind=kind, message="m")  # type: ignore[arg-type]  # what a caller may pass
    assert leaves_incomplete(kind) and problem.unverified
    report = _report(problem)
    assert not report.complete and exit_code(report) == EXIT_INCOMPLETE
    assert json.loads(report.to_json())["complete"] is False
    log = json.loads(sarif.render(report))
    [notification] = log["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert notification["level"] == "error"
    assert log["runs"][0]["invocations"][0]["executionSuccessful"] is False


def test_a_known_kind_given_as_a_string_keeps_its_decision() -> None:
    assert _report(Problem(kind="input", message="m")).complete  # type: ignore[arg-type]
    assert not _report(Problem(kind="walk", message="m")).complete  # type: ignore[arg-type]


def test_outputs_are_the_same_for_enum_members_and_their_strings() -> None:
    """The enums are StrEnums: JSON, SARIF and the table print exactly what the strings did."""

    def build(as_string: bool) -> Report:
        def name(member: enum.StrEnum) -> Any:
            return str.__str__(member) if as_string else member

        finding = Finding(
            check="448",
            title="t",
            severity=Severity.HIGH,
            kind=name(FindingKind.CONFIG_MODIFIED),
            path=b"etc/x",
            rule="r",
            effect=name(Effect.BLOCK),
        )
        problems = [Problem(kind=name(kind), message="m", path=b"p") for kind in ProblemKind]
        return _report(*problems, findings=(finding,))

    strings, members = build(True), build(False)
    strings.scan_id = members.scan_id  # each report draws its own: not what is compared here
    assert type(strings.findings[0].kind) is str
    assert members.to_json() == strings.to_json()
    assert sarif.render(members) == sarif.render(strings)
    assert table.render(members, color=False) == table.render(strings, color=False)
    assert '"kind": "config-modified"' in members.to_json()
    assert '"effect": "block"' in members.to_json()


def test_every_problem_and_finding_a_scan_makes_is_a_member(tmp_path: Path) -> None:
    tree = findings_tree.build(
        tmp_path, tamper=(findings_tree.BINARY,), extras=True, unverifiable=True
    )
    report = tree.scan()
    kinds = {type(finding.kind) for finding in report.findings}
    assert kinds == {FindingKind} and len(report.findings) >= 4
    assert [type(problem.kind) for problem in report.problems] == [ProblemKind]
    assert report.problems[0].kind is ProblemKind.COULD_NOT_VERIFY


def test_a_package_db_problem_maps_onto_its_kind(tmp_path: Path) -> None:
    """pkgdb knows nothing of scanner/: its problems become ProblemKind.PACKAGE_DB, incomplete."""
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": b"\x7fELF"})
    status = root / "var/lib/dpkg/status"
    status.write_bytes(status.read_bytes().rstrip(b"\n"))  # a partial read: a PkgDBProblem
    report = scanner.scan_root(root, checks=["448"])
    assert [problem.kind for problem in report.problems] == [ProblemKind.PACKAGE_DB]
    assert report.problems[0].kind is ProblemKind.PACKAGE_DB and not report.complete
    os.remove(status)
    (root / "var/lib/dpkg/status").mkdir()  # the whole DB unreadable: a PkgDBError
    report = scanner.scan_root(root, checks=["448"])
    assert [problem.kind for problem in report.problems] == [ProblemKind.PACKAGE_DB]


def test_a_policy_sets_the_effect_member_the_gate_reads() -> None:
    policy = parse_policy('version: 1\nrules:\n  - name: r\n    effects: {"448": block}\n')
    finding = Finding(
        check="448", title="t", severity=Severity.LOW, kind=FindingKind.MODIFIED, path=b"x"
    )
    report = _report(findings=(finding,))
    apply_policy(report, policy)
    assert report.findings[0].effect is Effect.BLOCK
    assert exit_code(report) == EXIT_BLOCKED


def _record(**fields: Any) -> dict[str, Any]:
    return {"problem": True, "message": "m", "path": None, "check": None, "package": None,
            "errno": None, **fields}  # fmt: skip


def test_state_records_read_back_as_members() -> None:
    problem = state.item_from_json(_record(kind="walk"))
    assert isinstance(problem, Problem) and problem.kind is ProblemKind.WALK
    finding = Finding(
        check="448", title="t", severity=Severity.HIGH, kind=FindingKind.MISSING, path=b"x",
        rule="r", effect=Effect.ALERT,
    )  # fmt: skip
    again = state.item_from_json(json.loads(json.dumps(state.item_to_json(finding))))
    assert again == finding
    assert isinstance(again, Finding)
    assert again.kind is FindingKind.MISSING and again.effect is Effect.ALERT


@pytest.mark.parametrize(
    "fields",
    [
        {"problem": True, "kind": "brand-new-kind"},
        {"kind": "brand-new-kind"},
        {"effect": "blok"},
    ],
    ids=["problem-kind", "finding-kind", "effect"],
)
def test_a_state_record_of_an_unknown_kind_is_not_replayed(fields: dict[str, Any]) -> None:
    finding = Finding(
        check="448", title="t", severity=Severity.HIGH, kind=FindingKind.MISSING, path=b"x"
    )
    data = state.item_to_json(finding) if "problem" not in fields else _record()
    data.update(fields)
    with pytest.raises(state.StateError):
        state.item_from_json(data)


def test_a_replayed_problem_of_an_unknown_kind_is_judged_again(tmp_path: Path) -> None:
    """Anyone can compute the state's seal: a recorded verdict turned into a problem of a kind no
    ProblemKind names used to be replayed as it was, and counted as verified (exit 0 for a
    modified binary). It is judged again: the modification is found (exit 1)."""
    tree = findings_tree.build(tmp_path, tamper=(findings_tree.BINARY,))
    time.sleep(state.RACY_NS / 1e9 + 0.1)  # past the racy window: verdicts are replayed
    state_file = tmp_path / "scan.state"
    first = tree.scan(state=str(state_file))
    sealed = state_file.read_bytes()

    def forge() -> None:
        header, entries = state.decode(sealed)
        [items] = header["verdicts"].values()
        items[:] = [_record(kind="brand-new-kind")]
        state_file.write_bytes(state.encode(header, entries))

    honest = tree.scan(state=str(state_file))  # the record as written: replayed, not read
    assert honest.stats.files_reused >= 1
    forge()
    again = tree.scan(state=str(state_file))
    assert again.stats.files_hashed == honest.stats.files_hashed + 1, (honest.stats, again.stats)
    assert again.problems == [] and again.complete
    assert [f.kind for f in again.findings] == [f.kind for f in first.findings] != []
    forge()
    code = cli.main(
        [str(tree.root), *tree.options, "--state", str(state_file), "--quiet", "--format",
         "json", "--output", str(tmp_path / "report.json")]
    )  # fmt: skip
    assert code == 1
