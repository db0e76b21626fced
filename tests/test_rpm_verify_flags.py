"""Check 448 honours rpm's per-file verify semantics: `%verify(...)`, `%config(missingok)`,
`%ghost`; on a real rpm root built with rpmbuild, tampered, with `rpm -Va` as the referee."""

from __future__ import annotations

import os
import re
import sqlite3
import struct
import subprocess
from pathlib import Path

import pytest
from rpmbuild import RPM_DB, build_rpm, install_rpm

import scanner
from pkgdb import RootFS, Verify
from pkgdb.rpm import read

SPEC = """\
Name: srverify
Version: 1.0
Release: 1
Summary: scan-root verify-flags test package
License: MIT
BuildArch: x86_64
%description
Files with %verify, %config(missingok) and %ghost attributes.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc/srv %{buildroot}/var/lib/srv
for b in plain nomd5 nomd5-link nomd5-same nomode nomode-fifo nolink; do
  cp /bin/true %{buildroot}/usr/bin/sr-$b
done
for c in optional optional-changed required; do echo "$c=1" > %{buildroot}/etc/srv/$c.conf; done
touch %{buildroot}/var/lib/srv/ghost-absent %{buildroot}/var/lib/srv/ghost-present
chmod 0644 %{buildroot}/var/lib/srv/ghost-*
%files
/usr/bin/sr-plain
%verify(not md5 size mtime) /usr/bin/sr-nomd5
%verify(not md5 size mtime) /usr/bin/sr-nomd5-link
%verify(not md5 size mtime) /usr/bin/sr-nomd5-same
%verify(not mode) /usr/bin/sr-nomode
%verify(not mode) /usr/bin/sr-nomode-fifo
%verify(not link) /usr/bin/sr-nolink
%config(missingok) /etc/srv/optional.conf
%config(missingok) /etc/srv/optional-changed.conf
%config /etc/srv/required.conf
%ghost /var/lib/srv/ghost-absent
%ghost /var/lib/srv/ghost-present
"""

# rpm -V result letters (rpm(8), VERIFY OPTIONS) mapped to the classes 448 reports.
RPM_CLASSES = {"5": "digest", "S": "digest", "M": "mode", "L": "link"}
OUR_CLASSES = {
    "modified": "digest",
    "config-modified": "digest",
    "mode-changed": "mode",
    "not-a-regular-file": "mode",  # rpm: the file type is part of MODE
    "not-a-symlink": "mode",
    "link-changed": "link",
    "replaced-by-symlink": "link",
    "missing": "missing",
}
# "SM5DLUGTP  c /path": the result letters, an optional attribute marker, the path.
LINE = re.compile(r"^(?P<flags>\S+)\s+(?:[cdglr]\s+)?(?P<path>/.*)$")
# rpm -V names a file's state after its path: "missing   /usr/bin/x (replaced)".
STATE_SUFFIX = re.compile(r" \((replaced|not installed|net shared|wrong color)\)$")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rpm(SPEC, tmp_path_factory.mktemp("rpmbuild"))


@pytest.fixture
def root(package: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    install_rpm(root, package)
    return root


def rpm_va(root: Path) -> set[tuple[str, str]]:
    """(path, class) for every result `rpm -Va` prints (owner/group/mtime letters carry none)."""
    out = subprocess.run(
        ["rpm", *RPM_DB, "--root", str(root), "-Va", "--nodeps", "--noscripts"],
        capture_output=True, text=True, check=False, timeout=60,
    ).stdout  # fmt: skip
    found = set()
    for line in out.splitlines():
        match = LINE.match(line)
        assert match, line
        flags, path = match["flags"], STATE_SUFFIX.sub("", match["path"])
        if flags == "missing":
            found.add((path, "missing"))
            continue
        found |= {(path, kind) for letter, kind in RPM_CLASSES.items() if letter in flags}
    return found


def ours(root: Path) -> set[tuple[str, str]]:
    report = scanner.scan_root(root, checks=["448"], all_files=True)
    assert report.complete, [p.to_dict() for p in report.problems]
    return {(f.to_dict()["path"], OUR_CLASSES[f.kind]) for f in report.findings}


def test_records_carry_rpms_verify_flags(root: Path) -> None:
    with RootFS(root) as fs:
        files = {f.path: f for f in read(fs).files}
    content = Verify.DIGEST | Verify.SIZE
    assert files[b"usr/bin/sr-plain"].verify is Verify.ALL
    assert files[b"usr/bin/sr-nomd5"].verify == Verify.ALL & ~content
    assert files[b"usr/bin/sr-nomode"].verify == Verify.ALL & ~(
        Verify.PERMISSIONS | Verify.FILE_TYPE
    )
    assert files[b"usr/bin/sr-nolink"].verify == Verify.ALL & ~Verify.LINK_TARGET
    assert files[b"var/lib/srv/ghost-absent"].verify == Verify.PERMISSIONS
    missing_ok = {path for path, f in files.items() if f.missing_ok}
    assert missing_ok == {
        b"etc/srv/optional.conf",
        b"etc/srv/optional-changed.conf",
        b"var/lib/srv/ghost-absent",
        b"var/lib/srv/ghost-present",
    }


def test_clean_root_is_clean_for_both(scan_impl: str, root: Path) -> None:
    assert rpm_va(root) == set() == ours(root)


def test_tampered_root_gets_rpm_va_verdicts(scan_impl: str, root: Path) -> None:
    bin_dir = root / "usr/bin"
    with open(bin_dir / "sr-plain", "ab") as handle:
        handle.write(b"x")  # content: reported
    with open(bin_dir / "sr-nomd5", "ab") as handle:
        handle.write(b"x")  # content not verified ...
    (bin_dir / "sr-nomd5").chmod(0o700)  # ... but its mode is
    data = bytearray((bin_dir / "sr-nomd5-same").read_bytes())
    data[300] ^= 1
    (bin_dir / "sr-nomd5-same").write_bytes(bytes(data))  # content only: silent
    (bin_dir / "sr-nomd5-link").unlink()
    (bin_dir / "sr-nomd5-link").symlink_to("sr-plain")  # a symlink: its target is verified
    (bin_dir / "sr-nomode").chmod(0o4755)  # mode not verified, not even setuid
    (bin_dir / "sr-nomode-fifo").unlink()
    os.mkfifo(bin_dir / "sr-nomode-fifo")  # type is part of mode: silent
    (bin_dir / "sr-nolink").unlink()
    (bin_dir / "sr-nolink").symlink_to("sr-plain")  # link target not verified: silent
    (root / "etc/srv/optional.conf").unlink()  # missingok: absence is fine
    (root / "etc/srv/optional-changed.conf").write_text("changed\n")  # but content counts
    (root / "etc/srv/required.conf").unlink()
    ghost = root / "var/lib/srv/ghost-present"
    ghost.parent.mkdir(parents=True, exist_ok=True)  # rpm makes no directory for ghosts alone
    ghost.write_bytes(b"any content a ghost may hold")
    ghost.chmod(0o600)  # a ghost's permissions are verified
    expected = {
        ("/usr/bin/sr-plain", "digest"),
        ("/usr/bin/sr-nomd5", "mode"),
        ("/usr/bin/sr-nomd5-link", "link"),
        ("/etc/srv/optional-changed.conf", "digest"),
        ("/etc/srv/required.conf", "missing"),
        ("/var/lib/srv/ghost-present", "mode"),
    }
    assert rpm_va(root) == expected
    assert ours(root) == expected


def test_ghost_of_another_type_and_content_is_silent(scan_impl: str, root: Path) -> None:
    ghost = root / "var/lib/srv/ghost-present"
    ghost.mkdir(parents=True)
    ghost.chmod(0o644)  # a directory where a file was declared, with the declared permissions
    (root / "var/lib/srv/ghost-absent").symlink_to("/nowhere")
    assert rpm_va(root) == set() == ours(root)


def set_file_states(root: Path, states: dict[bytes, int]) -> None:
    """FILESTATES of the named files rewritten in the root's rpmdb (outside the immutable
    region: rpm's header digest does not cover it, and rpm -V reads it as we do)."""
    connection = sqlite3.connect(root / "var/lib/rpm/rpmdb.sqlite")
    try:
        [(number, blob)] = connection.execute("SELECT hnum, blob FROM Packages").fetchall()
        il = struct.unpack_from(">I", blob)[0]
        entries = {
            tag: (offset, count)
            for tag, _, offset, count in struct.iter_unpack(">IIII", blob[8 : 8 + 16 * il])
        }
        store = 8 + 16 * il

        def strings(tag: int) -> list[bytes]:
            offset, count = entries[tag]
            return blob[store + offset :].split(b"\0")[:count]

        dirs, bases = strings(1118), strings(1117)
        indexes = struct.unpack_from(f">{len(bases)}I", blob, store + entries[1116][0])
        paths = [(dirs[i] + base).lstrip(b"/") for i, base in zip(indexes, bases)]
        data = bytearray(blob)
        for path, state in states.items():
            data[store + entries[1029][0] + paths.index(path)] = state
        connection.execute("UPDATE Packages SET blob = ? WHERE hnum = ?", (bytes(data), number))
        connection.commit()
    finally:
        connection.close()


def test_file_states_as_rpm_va_reads_them(scan_impl: str, root: Path) -> None:
    """replaced (1): existence only; not installed (2): skipped; wrong color (4): no content."""
    set_file_states(
        root,
        {
            b"usr/bin/sr-plain": 1,
            b"usr/bin/sr-nomode": 1,
            b"etc/srv/required.conf": 2,
            b"usr/bin/sr-nolink": 4,
            b"usr/bin/sr-nomd5-link": 4,
        },
    )
    with open(root / "usr/bin/sr-plain", "ab") as handle:
        handle.write(b"x")  # replaced: its content is the other package's business
    (root / "usr/bin/sr-nomode").unlink()  # replaced, but gone: missing
    (root / "etc/srv/required.conf").unlink()  # not installed: nothing expected
    with open(root / "usr/bin/sr-nolink", "ab") as handle:
        handle.write(b"x")  # wrong color: content not compared ...
    (root / "usr/bin/sr-nomd5-link").chmod(0o700)  # ... but its mode is
    expected = {("/usr/bin/sr-nomode", "missing"), ("/usr/bin/sr-nomd5-link", "mode")}
    assert rpm_va(root) == expected
    assert ours(root) == expected
