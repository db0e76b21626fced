"""The command line: options, formats, and the documented exit codes."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
from child import run_cli

import _native
from scanner import cli


def _dpkg_root(tmp_path: Path, *, tamper: bool) -> Path:
    """A tiny real-format dpkg root: one package owning one binary and one document."""
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/share/doc/tool").mkdir(parents=True)
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    binary = b"\x7fELF\x02\x01\x01" + b"\0" * 100
    (root / "usr/bin/tool").write_bytes(binary + (b"X" if tamper else b""))
    os.chmod(root / "usr/bin/tool", 0o755)
    copyright_text = b"GPL\n"
    (root / "usr/share/doc/tool/copyright").write_bytes(copyright_text)
    (root / "var/lib/dpkg/status").write_text(
        "Package: tool\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Description: a tool\n\n"
    )
    (root / "var/lib/dpkg/info/tool.md5sums").write_text(
        f"{hashlib.md5(binary).hexdigest()}  usr/bin/tool\n"
        f"{hashlib.md5(copyright_text).hexdigest()}  usr/share/doc/tool/copyright\n"
    )
    (root / "var/lib/dpkg/info/tool.list").write_text(
        "/usr\n/usr/bin\n/usr/bin/tool\n/usr/share/doc/tool/copyright\n"
    )
    return root


def test_clean_root_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _dpkg_root(tmp_path, tamper=False)
    assert cli.main([str(root), "--format", "json", "--quiet", "--checks", "448"]) == cli.EXIT_CLEAN
    report = json.loads(capsys.readouterr().out)
    assert report["schema"] == 1
    assert report["findings"] == []
    assert report["complete"] is True
    assert report["scanner"]["implementation"] == _native.IMPLEMENTATION
    assert report["stats"]["files_hashed"] == 2


def test_findings_exit_1_with_json_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dpkg_root(tmp_path, tamper=True)
    assert cli.main([str(root), "--format", "json", "--checks", "448"]) == cli.EXIT_FINDINGS
    finding = json.loads(capsys.readouterr().out)["findings"][0]
    assert finding["check"] == "448"
    assert finding["path"] == "/usr/bin/tool"
    assert finding["kind"] == "modified"
    assert finding["severity"] == "high"
    assert finding["package"] == {"name": "tool", "version": "1.0-1", "manager": "dpkg"}
    assert finding["algorithm"] == "md5" and finding["expected"] != finding["actual"]


def test_output_file_and_table(tmp_path: Path) -> None:
    root = _dpkg_root(tmp_path, tamper=True)
    out = tmp_path / "report.txt"
    assert cli.main([str(root), "--output", str(out)]) == cli.EXIT_FINDINGS
    text = out.read_text()
    assert "[448] Package binaries should not be altered: 1 finding(s)" in text
    assert "/usr/bin/tool" in text


def test_path_loop_cannot_be_verified_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _dpkg_root(tmp_path, tamper=False)
    with open(root / "var/lib/dpkg/info/tool.md5sums", "a") as handle:
        handle.write("0123456789abcdef0123456789abcdef  loop/tool\n")
    (root / "loop").symlink_to("loop")  # a symlink loop in a parent directory
    assert cli.main([str(root), "--format", "json"]) == cli.EXIT_INCOMPLETE
    report = json.loads(capsys.readouterr().out)
    assert report["complete"] is False and report["findings"] == []
    problem = next(p for p in report["problems"] if p["kind"] == "could-not-verify")
    assert problem["path"] == "/loop/tool" and problem["errno"] == 40


@pytest.mark.parametrize("argv", [["/nonexistent-root-for-scan-root"], ["--checks", "9999", "/"]])
def test_target_and_check_errors_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == cli.EXIT_USAGE
    assert "scan-root: " in capsys.readouterr().err


@pytest.mark.parametrize("exit_zero", [False, True])
def test_a_failure_of_scan_root_itself_exits_5_never_1(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    exit_zero: bool,
) -> None:
    """Python exits 1 on an uncaught exception, which would read as "findings": a bug is 5."""
    import scanner.scan

    def broken(*_args: object, **_kwargs: object) -> None:
        raise AttributeError("'_Counting' object has no attribute 'readinto'")

    monkeypatch.setattr(scanner.scan, "scan_root", broken)
    root = _dpkg_root(tmp_path, tamper=False)
    argv = [str(root), "--quiet", *(["--exit-zero"] if exit_zero else [])]
    assert cli.main(argv) == cli.EXIT_INTERNAL == 5
    err = capsys.readouterr().err
    assert "Traceback" in err and "readinto" in err and "internal error" in err


@pytest.mark.parametrize("argv", [["--jobs", "0", "/"], ["--format", "xml", "/"]])
def test_bad_options_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == cli.EXIT_USAGE


def test_version_names_implementation(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--version")
    assert f"({_native.IMPLEMENTATION} implementation)" in result.stdout


def test_help_documents_exit_codes(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "--help")
    for code in (
        "0  no findings",
        "1  at least one finding",
        "2  usage error",
        "3  no gating finding, but",
        "4  blocked",
    ):
        assert code in result.stdout
