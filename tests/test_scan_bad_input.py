"""Bad input at the scan level: each gives a clear problem or finding, and the scan goes on."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from trees import as_nobody, make_dpkg_root

import scanner

ELF = b"\x7fELF\x02\x01\x01" + bytes(200)


@pytest.fixture
def world_root() -> Iterator[Path]:
    """A root outside pytest's 0700 tmp dir, so an unprivileged child can reach it."""
    base = Path(tempfile.mkdtemp(prefix="scan-root-scan-"))
    base.chmod(0o755)
    try:
        yield base / "root"
    finally:
        shutil.rmtree(base)


def test_non_utf8_name_is_verified_and_reported_losslessly(tmp_path: Path) -> None:
    name = b"usr/bin/caf\xe9 tool"
    root = make_dpkg_root(tmp_path / "root", {name: ELF, b"usr/bin/ok": ELF})
    with open(bytes(root) + b"/" + name, "ab") as handle:
        handle.write(b"!")
    report = scanner.scan_root(root, checks=["448"])
    [finding] = report.findings
    assert finding.path == name and finding.kind == "modified"
    shown = finding.to_dict()
    assert shown["path"] == "/usr/bin/caf\\xe9 tool"
    assert bytes.fromhex(shown["path_hex"]) == name
    assert report.to_json()  # serialisable


def test_unreadable_file_is_could_not_verify_never_clean(world_root: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to uid 65534 (root itself is never denied)")
    root = make_dpkg_root(world_root, {b"usr/bin/secret": ELF, b"usr/bin/open": ELF})
    for directory in (root, *root.rglob("*")):
        if directory.is_dir():
            directory.chmod(0o755)
    (root / "var/lib/dpkg/status").chmod(0o644)
    (root / "var/lib/dpkg/info/tool.md5sums").chmod(0o644)
    (root / "usr/bin/secret").chmod(0o000)

    def scan() -> tuple[list[str], list[dict[str, object]], bool]:
        report = scanner.scan_root(root, checks=["448"])
        return (
            [f.kind for f in report.findings],
            [p.to_dict() for p in report.problems],
            report.complete,
        )

    kinds, problems, complete = as_nobody(scan)  # type: ignore[misc]
    assert kinds == []
    assert complete is False
    [problem] = problems
    assert problem["kind"] == "could-not-verify" and problem["path"] == "/usr/bin/secret"
    assert problem["errno"] == 13 and "Permission denied" in problem["message"]


def test_file_vanishing_before_hash_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/gone": ELF, b"usr/bin/here": ELF})
    import _native

    real = _native.hash_files

    def remove_then_hash(root_fd: int, requests: list[tuple[bytes, int]], **options):  # type: ignore[no-untyped-def]
        os.unlink(root / "usr/bin/gone")  # between reading the manifest and hashing
        return real(root_fd, requests, **options)

    monkeypatch.setattr(_native, "hash_files", remove_then_hash)
    report = scanner.scan_root(root, checks=["448"])
    assert [(f.path, f.kind) for f in report.findings] == [(b"usr/bin/gone", "missing")]


def test_symlink_out_of_the_root_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "tool").write_bytes(ELF)  # same content: following the link would "pass"
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF})
    (root / "usr/bin/tool").unlink()
    (root / "usr/bin/tool").symlink_to(outside / "tool")
    (root / "usr/lib").mkdir(parents=True)
    report = scanner.scan_root(root, checks=["448"])
    [finding] = report.findings
    assert finding.kind == "replaced-by-symlink"


def test_corrupt_status_is_a_problem_and_scan_completes(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF})
    (root / "var/lib/dpkg/status").write_bytes(os.urandom(4096))
    report = scanner.scan_root(root, checks=["448"])
    assert report.findings == []
    assert not report.complete
    assert any(p.kind == "package-db" and "dpkg" in p.message for p in report.problems)


def test_no_package_manager_is_said(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = scanner.scan_root(tmp_path / "empty", checks=["448"])
    assert report.managers == [] and report.findings == []
    assert any(p.kind == "no-package-db" for p in report.problems)


def test_file_over_the_content_limit_is_reported_skipped_with_its_size(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "srv").mkdir(parents=True)
    (root / "srv/big.bin").write_bytes(b"-----BEGIN RSA PRIVATE KEY-----\n" + bytes(5000))
    (root / "srv/small.txt").write_bytes(b"hello\n")
    report = scanner.scan_root(root, checks=["425", "426"], content_limit=1000)
    skipped = [p for p in report.problems if p.kind == "content-skipped"]
    size = (root / "srv/big.bin").stat().st_size
    assert [(p.path, f"{size} bytes" in p.message) for p in skipped] == [(b"srv/big.bin", True)]
    assert not report.complete  # not searched is not clean
    assert report.stats.files_walked == 3  # srv, big.bin, small.txt
