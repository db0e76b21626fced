"""Every package manager present in a root is detected, verified and summarised."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path

from test_scan_bad_input import ELF
from trees import make_dpkg_root

import scanner


def _add_apk(root: Path, path: bytes, content: bytes) -> None:
    full = bytes(root) + b"/" + path
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "wb") as handle:
        handle.write(content)
    os.chmod(full, 0o755)
    directory, _, name = path.rpartition(b"/")
    z = b"Q1" + base64.b64encode(hashlib.sha1(content).digest())
    (root / "lib/apk/db").mkdir(parents=True, exist_ok=True)
    (root / "lib/apk/db/installed").write_bytes(
        b"P:apk-tool\nV:2.0-r0\nA:x86_64\nF:"
        + directory
        + b"\nR:"
        + name
        + b"\na:0:0:755\nZ:"
        + z
        + b"\n\n"
    )


def test_dpkg_and_apk_in_one_root_are_both_verified(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/deb-tool": ELF})
    _add_apk(root, b"usr/sbin/apk-tool", ELF + b"apk")
    report = scanner.scan_root(root, checks=["448"])
    assert [(m.manager, m.packages, m.files) for m in report.managers] == [
        ("dpkg", 1, 1),
        ("apk", 1, 1),
    ]
    assert report.findings == [] and report.complete

    with open(root / "usr/bin/deb-tool", "ab") as handle:
        handle.write(b"!")
    with open(root / "usr/sbin/apk-tool", "ab") as handle:
        handle.write(b"!")
    report = scanner.scan_root(root, checks=["448"])
    assert sorted((f.path, f.package.manager if f.package else None) for f in report.findings) == [
        (b"usr/bin/deb-tool", "dpkg"),
        (b"usr/sbin/apk-tool", "apk"),
    ]


def test_distroless_status_d_only(tmp_path: Path) -> None:
    """A distroless image: no status file, only status.d stanzas, here without md5sums."""
    root = tmp_path / "root"
    (root / "var/lib/dpkg/status.d").mkdir(parents=True)
    (root / "var/lib/dpkg/status.d/base").write_text(
        "Package: base-files\nVersion: 11.1\nArchitecture: amd64\n"
    )
    report = scanner.scan_root(root, checks=["448"])
    assert [(m.manager, m.packages) for m in report.managers] == [("dpkg", 1)]
    # no md5sums: its files cannot be verified, and the report says so rather than passing
    assert not report.complete
    assert any("base-files" in p.message for p in report.problems)
