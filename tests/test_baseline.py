"""`--baseline`: known findings accepted, new ones still fail; the file's format and its errors."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import findings_tree
import pytest

from scanner import cli
from scanner.baseline import Baseline, BaselineError, Entry
from scanner.report import Finding, PackageRef, Severity


def _scan(
    tree: findings_tree.Tree, capsys: pytest.CaptureFixture[str], *options: str
) -> tuple[int, dict[str, Any]]:
    code = cli.main([str(tree.root), *tree.options, "--format", "json", *options])
    out = capsys.readouterr().out
    return code, (json.loads(out) if out else {})


@pytest.fixture
def tree(tmp_path: Path) -> findings_tree.Tree:
    """Three tampered binaries (one name with a space, one not UTF-8), a key, a miner, a secret."""
    return findings_tree.build(
        tmp_path,
        tamper=(findings_tree.BINARY, findings_tree.SPACED, findings_tree.LATIN1),
        extras=True,
    )


def test_accept_known_findings_then_only_new_ones_gate(
    tree: findings_tree.Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "ci" / "baseline.json"
    baseline.parent.mkdir()
    # Without a baseline these findings fail the scan.
    code, report = _scan(tree, capsys)
    assert code == cli.EXIT_FINDINGS
    known = len(report["findings"])
    assert {f["check"] for f in report["findings"]} == {"448", "424", "425", "426"}

    # First run: the baseline is written, and this scan's findings are accepted.
    code, report = _scan(tree, capsys, "--baseline", str(baseline))
    assert code == cli.EXIT_CLEAN
    assert all(f["baselined"] for f in report["findings"])
    assert report["notices"] == [
        f"baseline written to {baseline}: {known} entries; {known} finding(s) of this scan accepted"
    ]
    assert os.listdir(baseline.parent) == ["baseline.json"]  # no temporary file left behind
    assert stat.S_IMODE(baseline.stat().st_mode) == 0o644

    # Second run, same root: everything known.
    code, report = _scan(tree, capsys, "--baseline", str(baseline))
    assert code == cli.EXIT_CLEAN
    assert report["notices"] == [f"baseline {baseline}: {known} of {known} finding(s) accepted"]

    # One more tampered file: only it gates.
    with open(bytes(tree.root) + b"/" + findings_tree.DOCUMENT, "ab") as handle:
        handle.write(b"tampered")
    code, report = _scan(tree, capsys, "--baseline", str(baseline))
    assert code == cli.EXIT_FINDINGS
    fresh = [f for f in report["findings"] if not f.get("baselined")]
    assert [(f["path"], f["severity"]) for f in fresh] == [
        ("/usr/share/doc/tool/copyright", "medium")
    ]
    assert len(report["findings"]) == known + 1
    # ... and is below a `--fail-on high` gate.
    assert _scan(tree, capsys, "--baseline", str(baseline), "--fail-on", "high")[0] == 0

    # --update-baseline accepts it; the next run is clean again.
    code, report = _scan(tree, capsys, "--baseline", str(baseline), "--update-baseline")
    assert code == cli.EXIT_CLEAN and all(f["baselined"] for f in report["findings"])
    assert "baseline written" in report["notices"][0]
    assert _scan(tree, capsys, "--baseline", str(baseline))[0] == cli.EXIT_CLEAN
    assert len(json.loads(baseline.read_text())["entries"]) == known + 1

    # A repaired file leaves an entry that matches nothing: said, not an error.
    with open(bytes(tree.root) + b"/" + findings_tree.BINARY, "wb") as handle:
        handle.write(b"\x7fELF\x02\x01\x01\0" + findings_tree.BINARY + b"\0" * 64)
    code, report = _scan(tree, capsys, "--baseline", str(baseline))
    assert code == cli.EXIT_CLEAN
    assert "1 entries match nothing any more" in report["notices"][0]


def test_entries_for_spaces_non_utf8_and_the_environment(
    tree: findings_tree.Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    assert _scan(tree, capsys, "--baseline", str(baseline))[0] == cli.EXIT_CLEAN
    text = baseline.read_text()
    assert findings_tree.TOKEN not in text  # names only, never values
    document = json.loads(text)
    assert document["schema"] == 1
    assert document["scanner"]["name"] == "scan-root"
    entries = document["entries"]
    assert {"check": "448", "path": "/usr/bin/my tool", "package": "tool"} in entries
    assert {
        "check": "448",
        "path": "/usr/bin/caf\\xe9",
        "path_hex": findings_tree.LATIN1.hex(),
        "package": "tool",
    } in entries
    assert {
        "check": "424",
        "path": None,
        "package": None,
        "source": "task-definition:web/container:app",
        "variables": ["GITHUB_TOKEN"],
    } in entries
    assert {"check": "425", "path": "/srv/app/deploy.key", "package": None} in entries
    assert {"check": "426", "path": "/tmp/xmrig", "package": None} in entries
    assert entries == sorted(entries, key=lambda e: json.dumps(e, sort_keys=True))


def test_a_new_secret_in_a_known_source_gates(
    tree: findings_tree.Tree, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    baseline = tmp_path / "baseline.json"
    assert _scan(tree, capsys, "--baseline", str(baseline))[0] == cli.EXIT_CLEAN
    assert tree.task is not None
    task = json.loads(tree.task.read_text())
    task["containerDefinitions"][0]["environment"].append(
        {"name": "DB_PASSWORD", "value": "Tr0ub4dor-prod"}
    )
    tree.task.write_text(json.dumps(task))
    code, report = _scan(tree, capsys, "--baseline", str(baseline))
    assert code == cli.EXIT_FINDINGS
    fresh = [f for f in report["findings"] if not f.get("baselined")]
    assert [f["check"] for f in fresh] == ["424"]


def _finding(path: bytes, package: str | None = "tool") -> Finding:
    return Finding(
        check="448",
        title="t",
        severity=Severity.HIGH,
        kind="modified",
        path=path,
        package=PackageRef(package, "1", "dpkg") if package else None,
    )


def test_matching_is_by_raw_path_check_and_package() -> None:
    latin1 = _finding(b"usr/bin/caf\xe9")
    baseline = Baseline.from_findings([latin1, _finding(b"usr/bin/my tool")])
    assert baseline.accepts(latin1)
    assert baseline.accepts(_finding(b"usr/bin/my tool"))
    # The same display form, another raw name: a literal backslash is not the byte 0xe9.
    assert not baseline.accepts(_finding(b"usr/bin/caf\\xe9"))
    assert not baseline.accepts(_finding(b"usr/bin/my tool", package="other"))
    assert not baseline.accepts(_finding(b"usr/bin/my tool", package=None))
    assert not baseline.accepts(_finding(b"usr/bin/my  tool"))


def test_read_back_equals_written(tmp_path: Path) -> None:
    written = Baseline.from_findings([_finding(b"usr/bin/caf\xe9"), _finding(b"a b")])
    path = tmp_path / "b.json"
    path.write_text(written.to_json())
    assert Baseline.read(str(path)).entries == written.entries
    assert Entry.of(_finding(b"a b")).to_dict() == {
        "check": "448",
        "path": "/a b",
        "package": "tool",
    }


_HEAD = b'{"schema": 1, "scanner": {"name": "scan-root"}, "entries": '


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe", "not valid JSON"),
        (b"[]", "not a scan-root baseline"),
        (b'{"schema": 1, "entries": []}', "not a scan-root baseline"),
        (b'{"schema": 1, "scanner": {"name": "trivy"}, "entries": []}', "not a scan-root"),
        (b'{"schema": 2, "scanner": {"name": "scan-root"}, "entries": []}', "schema 2 is not"),
        (b'{"scanner": {"name": "scan-root"}, "entries": []}', "schema None is not"),
        (b'{"schema": 1, "scanner": {"name": "scan-root"}, "entries": {}}', "must be a list"),
        (b'{"schema": 1, "scanner": {"name": "scan-root"}, "entries": [3]}', "entries[0]"),
        (
            b'{"schema": 1, "scanner": {"name": "scan-root"}, "entries": [{"path": "/x"}]}',
            "`check` must be",
        ),
        (
            _HEAD + b'[{"check": "448", "path": 3}]}',
            "`path` must be",
        ),
        (
            _HEAD + b'[{"check": "448", "path_hex": "zz"}]}',
            "not hex",
        ),
        (
            _HEAD + b'[{"check": "448", "value": "s3cret"}]}',
            "unknown field(s) value",
        ),
        (b'{"schema": true, "scanner": {"name": "scan-root"}, "entries": []}', "schema True"),
        (  # quoted short, not 900 KB of it
            b'{"schema": [' + b'"xxxxxxxxxx", ' * 90_000 + b'1], "scanner": {"name": "scan-root"}}',
            "... (list) is not supported",
        ),
        (_HEAD + b'[{"check": "448", "' + b"k" * 1_000_000 + b'": 1}]}', "unknown field(s) kkk"),
    ],
)
def test_bad_baseline_exits_2_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, message: str
) -> None:
    tree = findings_tree.build(tmp_path, tamper=(findings_tree.BINARY,))
    baseline = tmp_path / "baseline.json"
    baseline.write_bytes(content)
    assert cli.main([str(tree.root), *tree.options, "--baseline", str(baseline)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # fails before scanning: no report
    assert captured.err.startswith(f"scan-root: baseline {baseline}") and message in captured.err
    assert baseline.read_bytes() == content  # never rewritten
    assert len(captured.err) < 1000
    with pytest.raises(BaselineError):
        Baseline.read(str(baseline))


def test_baseline_never_written_inside_the_scanned_root(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = findings_tree.build(tmp_path, tamper=(findings_tree.BINARY,))
    os.symlink(tree.root / "srv", tmp_path / "via-link")
    for inside in (tree.root / "srv/baseline.json", tmp_path / "via-link/baseline.json"):
        assert cli.main([str(tree.root), *tree.options, "--baseline", str(inside)]) == 2
        assert "inside the scanned target" in capsys.readouterr().err
    assert os.listdir(tree.root / "srv") == []


def test_unwritable_baseline_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = findings_tree.build(tmp_path)
    target = tmp_path / "missing-dir" / "baseline.json"
    assert cli.main([str(tree.root), *tree.options, "--baseline", str(target)]) == 2
    assert "cannot write baseline" in capsys.readouterr().err
    directory = tmp_path / "a-directory"
    directory.mkdir()
    assert cli.main([str(tree.root), *tree.options, "--baseline", str(directory)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_update_baseline_replaces_a_corrupt_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A corrupt baseline stops the scan, and `--update-baseline` is the way out of it."""
    tree = findings_tree.build(tmp_path, tamper=(findings_tree.BINARY,))
    baseline = tmp_path / "baseline.json"
    baseline.write_text("{corrupt")
    assert _scan(tree, capsys, "--baseline", str(baseline))[0] == 2
    code, report = _scan(tree, capsys, "--baseline", str(baseline), "--update-baseline")
    assert code == cli.EXIT_CLEAN and report["findings"][0]["baselined"] is True
    assert json.loads(baseline.read_text())["entries"] == [
        {"check": "448", "path": "/usr/bin/tool", "package": "tool"}
    ]


def test_baseline_spelled_through_the_root_is_refused_wherever_it_leads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A symlink planted in the root (srv/out -> a host directory) must not carry a baseline
    spelled through the root out of it: the host directory would be written."""
    tree = findings_tree.build(tmp_path, tamper=(findings_tree.BINARY,))
    host = tmp_path / "host-directory"
    host.mkdir()
    os.symlink(host, tree.root / "srv/out")
    assert (
        cli.main([str(tree.root), *tree.options, "--baseline", str(tree.root / "srv/out/b")]) == 2
    )
    assert "inside the scanned target" in capsys.readouterr().err
    assert list(host.iterdir()) == []
