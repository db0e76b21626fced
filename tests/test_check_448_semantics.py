"""Check 448's verdicts for every kind of record and on-disk state, as a (case, expected) table."""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from pkgdb import DigestAlgorithm, InstalledFile, RootFS
from scanner.checks.base import ScanContext, ScanOptions
from scanner.checks.package_binaries import PackageBinariesCheck
from scanner.manifests import Manifests
from scanner.report import Finding, ManagerSummary, Problem, Severity, Stats

ELF = b"\x7fELF\x02\x01\x01" + bytes(64)
REG = stat.S_IFREG


def record(path: bytes, content: bytes = ELF, **fields: object) -> InstalledFile:
    base: dict[str, object] = {
        "path": path,
        "package": "pkg",
        "version": "1-1",
        "manager": "rpm",
        "digest": hashlib.sha256(content).digest(),
        "algorithm": DigestAlgorithm.SHA256,
        "mode": REG | 0o755,
        "size": len(content),
    }
    base.update(fields)
    return InstalledFile(**base)  # type: ignore[arg-type]


def _write(root: Path, rel: str, content: bytes = ELF, mode: int = 0o755) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    os.chmod(path, mode)


Setup = Callable[[Path], None]

CASES: list[tuple[str, InstalledFile, Setup, list[tuple[str, Severity]]]] = [
    ("intact", record(b"usr/bin/a"), lambda r: _write(r, "usr/bin/a"), []),
    (
        "same-size flip",
        record(b"usr/bin/a"),
        lambda r: _write(r, "usr/bin/a", ELF[:-1] + b"\x01"),
        [("modified", Severity.HIGH)],
    ),
    (
        "size differs",
        record(b"usr/bin/a"),
        lambda r: _write(r, "usr/bin/a", ELF + b"x"),
        [("modified", Severity.HIGH)],
    ),
    (
        "mode only",
        record(b"usr/bin/a"),
        lambda r: _write(r, "usr/bin/a", mode=0o700),
        [("mode-changed", Severity.LOW)],
    ),
    (
        "setuid added",
        record(b"usr/bin/a"),
        lambda r: _write(r, "usr/bin/a", mode=0o4755),
        [("mode-changed", Severity.HIGH)],
    ),
    (
        "digest and mode",
        record(b"usr/bin/a"),
        lambda r: _write(r, "usr/bin/a", ELF[:-1] + b"\x02", mode=0o777),
        [("modified", Severity.HIGH), ("mode-changed", Severity.HIGH)],
    ),
    (
        "missing",
        record(b"usr/bin/a"),
        lambda r: (r / "usr/bin").mkdir(parents=True),
        [("missing", Severity.HIGH)],
    ),
    (
        "rpm symlink intact",
        record(
            b"usr/bin/l",
            digest=None,
            algorithm=None,
            mode=stat.S_IFLNK | 0o777,
            size=1,
            link_target=b"a",
        ),
        lambda r: (_write(r, "usr/bin/a"), os.symlink("a", r / "usr/bin/l")),
        [],
    ),
    (
        "rpm symlink retargeted",
        record(
            b"usr/bin/l",
            digest=None,
            algorithm=None,
            mode=stat.S_IFLNK | 0o777,
            size=1,
            link_target=b"a",
        ),
        lambda r: (_write(r, "usr/bin/a"), os.symlink("/tmp/evil", r / "usr/bin/l")),
        [("link-changed", Severity.HIGH)],
    ),
    (
        "apk symlink digest of target string",
        record(
            b"usr/bin/l",
            digest=hashlib.sha1(b"a").digest(),
            algorithm=DigestAlgorithm.SHA1,
            mode=stat.S_IFLNK | 0o777,
            size=None,
            manager="apk",
        ),
        lambda r: (_write(r, "usr/bin/a"), os.symlink("a", r / "usr/bin/l")),
        [],
    ),
    (
        "apk symlink retargeted",
        record(
            b"usr/bin/l",
            digest=hashlib.sha1(b"a").digest(),
            algorithm=DigestAlgorithm.SHA1,
            mode=stat.S_IFLNK | 0o777,
            size=None,
            manager="apk",
        ),
        lambda r: (_write(r, "usr/bin/a"), os.symlink("b", r / "usr/bin/l")),
        [("link-changed", Severity.HIGH)],
    ),
    (
        "regular file where a symlink was recorded",
        record(
            b"usr/bin/l", digest=None, algorithm=None, mode=stat.S_IFLNK | 0o777, link_target=b"a"
        ),
        lambda r: _write(r, "usr/bin/l"),
        [("not-a-symlink", Severity.HIGH)],
    ),
    (
        "replaced by symlink",
        record(b"usr/bin/a"),
        lambda r: ((r / "usr/bin").mkdir(parents=True), os.symlink("/bin/true", r / "usr/bin/a")),
        [("replaced-by-symlink", Severity.HIGH)],
    ),
    (
        "config file changed (all files)",
        record(b"etc/a.conf", b"x=1\n", mode=REG | 0o644, is_config=True),
        lambda r: _write(r, "etc/a.conf", b"x=2\n", 0o644),
        [("config-modified", Severity.LOW)],
    ),
    (
        "document changed (all files)",
        record(b"usr/share/doc/a", b"doc\n", mode=REG | 0o644),
        lambda r: _write(r, "usr/share/doc/a", b"DOC\n", 0o644),
        [("modified", Severity.MEDIUM)],
    ),
    (
        "dpkg records no mode: chmod is not a finding",
        record(b"usr/bin/a", manager="dpkg", mode=None, size=None),
        lambda r: _write(r, "usr/bin/a", mode=0o700),
        [],
    ),
]


def _run(root: Path, records: list[InstalledFile], all_files: bool) -> list[Finding | Problem]:
    with RootFS(root) as fs:
        context = ScanContext(
            root=fs,
            options=ScanOptions(all_files=all_files),
            manifests=Manifests(files=records, summaries=[ManagerSummary("rpm", 1, len(records))]),
            stats=Stats(),
        )
        return list(PackageBinariesCheck().run(context))


@pytest.mark.parametrize(
    ("case", "installed", "setup", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_verdicts(
    tmp_path: Path,
    case: str,
    installed: InstalledFile,
    setup: Setup,
    expected: list[tuple[str, Severity]],
) -> None:
    setup(tmp_path)
    items = _run(tmp_path, [installed], all_files=True)
    found = [(item.kind, item.severity) for item in items if isinstance(item, Finding)]
    assert found == expected
    assert not [item for item in items if isinstance(item, Problem)]


def test_documents_are_out_of_the_default_scope(tmp_path: Path) -> None:
    _write(tmp_path, "usr/share/doc/a", b"DOC\n", 0o644)
    items = _run(
        tmp_path, [record(b"usr/share/doc/a", b"doc\n", mode=REG | 0o644)], all_files=False
    )
    assert items == []


def test_non_executable_elf_outside_bin_dirs_is_a_binary(tmp_path: Path) -> None:
    _write(tmp_path, "opt/plugin", ELF[:-1] + b"\x09", 0o644)
    items = _run(tmp_path, [record(b"opt/plugin", mode=REG | 0o644)], all_files=False)
    assert [(i.kind, i.severity) for i in items if isinstance(i, Finding)] == [
        ("modified", Severity.HIGH)
    ]
