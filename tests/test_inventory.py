"""`scan-root packages`: the inventory equals what the package managers' own tools list."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from debroot import debootstrap_root
from test_pkgdb_rpm import FIXTURES, fixture_root

from scanner import cli


@pytest.mark.debootstrap
def test_dpkg_inventory_equals_dpkg_query(capsys: pytest.CaptureFixture[str]) -> None:
    root = debootstrap_root()
    referee = subprocess.run(
        [
            "dpkg-query",
            f"--admindir={root}/var/lib/dpkg",
            "-W",
            "-f",
            "${db:Status-Abbrev}|${Package}|${Version}|${Architecture}\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    expected = sorted(tuple(line.split("|")[1:]) for line in referee if line.startswith("ii"))
    assert cli.main(["packages", str(root), "--format", "json"]) == cli.EXIT_CLEAN
    listed = json.loads(capsys.readouterr().out)
    assert listed["schema"] == 1
    ours = sorted((p["name"], p["version"], p["arch"]) for p in listed["packages"])
    assert ours == expected
    assert all(p["manager"] == "dpkg" and p["release"] is None for p in listed["packages"])
    coreutils = next(p for p in listed["packages"] if p["name"] == "coreutils")
    libc = next(p for p in listed["packages"] if p["name"] == "libc6")
    assert (coreutils["source"], libc["source"]) == ("coreutils", "glibc")
    md5sums = (root / "var/lib/dpkg/info/coreutils.md5sums").read_text().splitlines()
    assert coreutils["files"] == len(md5sums)


def test_table_format_and_bad_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["packages", str(tmp_path)]) == cli.EXIT_CLEAN
    assert capsys.readouterr().out.startswith("MANAGER  NAME")
    assert cli.main(["packages", str(tmp_path / "absent")]) == cli.EXIT_USAGE


def _packages(capsys: pytest.CaptureFixture[str], root: Path) -> list[dict[str, object]]:
    assert cli.main(["packages", str(root), "--format", "json"]) == cli.EXIT_CLEAN
    listed = json.loads(capsys.readouterr().out)
    assert listed["problems"] == []
    packages: list[dict[str, object]] = listed["packages"]
    return packages


@pytest.mark.parametrize(("kind", "name"), FIXTURES, ids=[f"{k}-{n}" for k, n in FIXTURES])
def test_rpm_fixture_inventory_equals_ground_truth(
    shared_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, name: str
) -> None:
    root = fixture_root(shared_fixtures, tmp_path, kind, name)
    listed = _packages(capsys, root)
    lines = sorted(
        f"{p['name']} {_epoch(p['epoch'])}{p['version']}-{p['release']} {p['arch'] or '(none)'}"
        for p in listed
    )
    expected = (shared_fixtures / "rpm" / kind / f"{name}.expected.txt").read_text().splitlines()
    assert lines == expected


def _epoch(epoch: object) -> str:
    return "" if epoch is None else f"{epoch}:"


# PROVENANCE.md, EXPECTED (apk): packages, file entries, first two packages.
APK_TRUTH = {
    "alpine-3.4.6-x86_64-haconiwa-rootfs": (16, 266, [("musl", "1.1.14-r14"), ("busybox", "1.24.2-r12")]),
    "alpine-3.6.0-x86_64-docker-export": (11, 68, [("musl", "1.1.16-r9"), ("busybox", "1.26.2-r4")]),
    "alpine-3.14.0-armv7-rootfs": (26, 292, [("musl", "1.2.2-r3"), ("alpine-keys", "2.3-r1")]),
    "alpine-3.16-x86_64-syft": (14, 105, [("alpine-baselayout-data", "3.2.0-r22"), ("musl", "1.2.3-r0")]),
    "alpine-3.18-x86_64-scalibr": (
        15, 109, [("alpine-baselayout", "3.4.3-r1"), ("alpine-baselayout-data", "3.4.3-r1")]
    ),
    "alpine-3.19.1-aarch64-minirootfs": (
        15, 111, [("alpine-baselayout", "3.4.3-r2"), ("alpine-baselayout-data", "3.4.3-r2")]
    ),
    "alpine-3.23.3-aarch64-apktools3": (
        22, 194, [("alpine-baselayout", "3.7.1-r8"), ("alpine-baselayout-data", "3.7.1-r8")]
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(APK_TRUTH))
def test_apk_fixture_inventory_equals_ground_truth(
    shared_fixtures: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    shutil.copyfile(shared_fixtures / f"apk/{name}.installed", root / "lib/apk/db/installed")
    count, files, first_two = APK_TRUTH[name]
    listed = _packages(capsys, root)
    assert len(listed) == count
    assert sum(int(str(p["files"])) for p in listed) == files
    db_order = [
        line[2:]
        for line in (root / "lib/apk/db/installed").read_text().splitlines()
        if line.startswith("P:")
    ]
    versions = {str(p["name"]): str(p["version"]) for p in listed}
    assert [(n, versions[n]) for n in db_order[:2]] == first_two
    assert all(p["manager"] == "apk" and p["release"] is None for p in listed)


def test_dpkg_fixture_inventory(shared_fixtures: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The real Ubuntu sample root, read in place: 348 installed (5 config-files stanzas are not)."""
    listed = _packages_with_problems(
        capsys, shared_fixtures / "dpkg/rootfs/ubuntu-24.04-amd64-lxc-sample"
    )
    assert len(listed) == 348
    versions = {p["name"]: (p["version"], p["arch"]) for p in listed}
    assert versions["base-files"] == ("13ubuntu10.4", "amd64")
    assert versions["bash"] == ("5.2.21-2ubuntu4", "amd64")
    assert versions["netbase"] == ("6.4", "all")
    assert "git" not in versions  # `deinstall ok config-files`


def _packages_with_problems(
    capsys: pytest.CaptureFixture[str], root: Path
) -> list[dict[str, object]]:
    """As _packages, for a sample root whose trimmed info files leave packages unverifiable."""
    assert cli.main(["packages", str(root), "--format", "json"]) == cli.EXIT_CLEAN
    packages: list[dict[str, object]] = json.loads(capsys.readouterr().out)["packages"]
    return packages
