"""Check 448 on a real rpm root made with Debian's rpmbuild/rpm; `rpm -Va` is the referee."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from rpmbuild import RPM_DB, build_rpm, install_rpm

import scanner

SPEC = """\
Name: srbin
Version: 1.0
Release: 1
Summary: scan-root 448 test package
License: MIT
BuildArch: x86_64
%description
ELF binaries, a symlink, a %config file, a %ghost file and a %doc file.
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc/sr %{buildroot}/usr/share/doc/srbin %{buildroot}/var/lib/sr
for b in true false echo env cat ls; do cp /bin/$b %{buildroot}/usr/bin/sr-$b; done
ln -s sr-true %{buildroot}/usr/bin/sr-link
echo "k=v" > %{buildroot}/etc/sr/sr.conf
echo doc > %{buildroot}/usr/share/doc/srbin/README
touch %{buildroot}/var/lib/sr/state
%files
/usr/bin/*
%config(noreplace) /etc/sr/sr.conf
%doc /usr/share/doc/srbin/README
%ghost /var/lib/sr/state
"""
RPM = ["rpm", *RPM_DB]

# rpm -V result letters (rpm(8), VERIFY OPTIONS) mapped to the classes 448 reports.
RPM_CLASSES = {"5": "digest", "S": "digest", "M": "mode", "L": "link"}
OUR_CLASSES = {
    "modified": "digest",
    "config-modified": "digest",
    "mode-changed": "mode",
    "link-changed": "link",
    "replaced-by-symlink": "link",
    "missing": "missing",
}


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rpm(SPEC, tmp_path_factory.mktemp("rpmbuild"))


@pytest.fixture
def root(package: Path, tmp_path: Path) -> Path:
    root = tmp_path / "root"
    install_rpm(root, package)
    return root


def rpm_verify(root: Path) -> set[tuple[str, str]]:
    """(path, class) for every problem `rpm -Va` reports; mtime-only (T) lines carry no class."""
    out = subprocess.run(
        [*RPM, "--root", str(root), "-Va", "--nodeps"], capture_output=True, text=True, check=False
    ).stdout
    found = set()
    for line in out.splitlines():
        flags, _, rest = line.partition(" ")
        path = rest.strip().removeprefix("c ").strip()
        if flags == "missing":
            found.add((path, "missing"))
            continue
        for letter, kind in RPM_CLASSES.items():
            if letter in flags:
                found.add((path, kind))
    return found


def ours(root: Path, all_files: bool = True) -> set[tuple[str, str]]:
    report = scanner.scan_root(root, checks=["448"], all_files=all_files)
    assert report.complete, [p.to_dict() for p in report.problems]
    return {(f.to_dict()["path"], OUR_CLASSES[f.kind]) for f in report.findings}


def test_clean_rpm_root(root: Path) -> None:
    assert rpm_verify(root) == set()
    assert ours(root) == set()
    [manager] = scanner.scan_root(root, checks=["448"]).managers
    assert (manager.manager, manager.packages) == ("rpm", 1)


def test_tampering_matches_rpm_va(root: Path) -> None:
    bin_dir = root / "usr/bin"
    data = bytearray((bin_dir / "sr-true").read_bytes())
    data[300] ^= 1
    (bin_dir / "sr-true").write_bytes(bytes(data))  # same-size flip
    with open(bin_dir / "sr-false", "ab") as handle:
        handle.write(b"x")  # append
    (bin_dir / "sr-echo").unlink()
    (bin_dir / "sr-echo").symlink_to("/bin/true")  # replaced by a symlink
    (bin_dir / "sr-env").unlink()  # deleted
    (bin_dir / "sr-cat").chmod(0o700)  # permissions only
    (bin_dir / "sr-ls").chmod(0o4755)  # setuid added
    (bin_dir / "sr-link").unlink()
    (bin_dir / "sr-link").symlink_to("sr-false")  # symlink retargeted
    (root / "etc/sr/sr.conf").write_text("k=w\n")  # %config changed
    expected = {
        ("/usr/bin/sr-true", "digest"),
        ("/usr/bin/sr-false", "digest"),
        ("/usr/bin/sr-echo", "link"),
        ("/usr/bin/sr-env", "missing"),
        ("/usr/bin/sr-cat", "mode"),
        ("/usr/bin/sr-ls", "mode"),
        ("/usr/bin/sr-link", "link"),
        ("/etc/sr/sr.conf", "digest"),
    }
    assert rpm_verify(root) == expected
    assert ours(root) == expected
    # by default %config files are out of scope, as dpkg conffiles are
    assert ours(root, all_files=False) == expected - {("/etc/sr/sr.conf", "digest")}
