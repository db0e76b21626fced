"""Vulnerability matching end to end on real roots: every vulnerability scan-root reports is
recomputed here independently (the advisory files read with json, installed packages listed by
the package managers' own tools, versions ordered by `dpkg --compare-versions`, rpm's
labelCompare and nexB's univers) and none is missed; plus release detection and source names."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from debroot import copy_root, debootstrap_root
from rpmbuild import build_rpm, install_rpm

from console.report_schema import parse_report
from pkgdb.rootfs import RootFS
from scanner import scan_root
from scanner.inventory import list_packages
from vulndb.records import Distro, Ecosystem
from vulndb.release import detect_release
from vulndb.sources import read
from vulndb.store import VulnDB

ADVISORIES = Path(__file__).resolve().parent / "fixtures" / "advisories"
TRACKER = ADVISORIES / "debian-derived" / "tracker-excerpt.json"
ALMA = ADVISORIES / "alma" / "ALSA-2025:19403.json"
ALPINE_319 = ADVISORIES / "alpine" / "3.19" / "main"
MINIROOTFS = "apk/rootfs/alpine-3.19.1-aarch64-minirootfs-sample"


@pytest.fixture(autouse=True, params=["keys", "compare"])
def judge(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: ranges judged by the store's sort keys (SQLite's memcmp), and with no
    key on the installed side, so that compare() judges every range in Python."""
    if request.param == "compare":
        monkeypatch.setattr("vulndb.match.sort_key", lambda manager, version: None)
    return str(request.param)


def make_db(path: Path, *sources: Path) -> Path:
    with VulnDB.open_write(path) as db:
        for source in sources:
            db.import_advisories(read(source), label=source.name)
    return path


def vulnerabilities(root: Path, db: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    parse_report(report)  # the console takes the report as it is (its own schema's judgement)
    return report, report["vulnerabilities"]


def dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b]).returncode == 0


# --- release detection ------------------------------------------------------------------


def os_release_root(tmp_path: Path, text: str, *, linked: bool = False) -> Path:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    if linked:  # as Debian ships it: /etc/os-release -> ../usr/lib/os-release
        (root / "usr/lib/os-release").write_text(text)
        (root / "etc/os-release").symlink_to("../usr/lib/os-release")
    else:
        (root / "etc/os-release").write_text(text)
    return root


@pytest.mark.parametrize(
    ("text", "name", "candidates"),
    [
        ("ID=alpine\nVERSION_ID=3.19.1\n", "Alpine v3.19", [(Distro.ALPINE, "v3.19")]),
        ('ID=debian\nVERSION_ID="12"\n', "Debian 12", [(Distro.DEBIAN, "12")]),
        ("ID=debian\nVERSION_CODENAME=trixie\n", "Debian 13", [(Distro.DEBIAN, "13")]),
        ('ID=ubuntu\nVERSION_ID="24.04"\n', "Ubuntu 24.04", [(Distro.UBUNTU, "24.04")]),
        ('ID="rocky"\nVERSION_ID="9.3"\n', "Rocky Linux 9", [(Distro.ROCKY, "9")]),
        ('ID="almalinux"\nVERSION_ID="10.0"\n', "AlmaLinux 10", [(Distro.ALMA, "10")]),
        ('ID="rhel"\nVERSION_ID="8.0"\n', "Red Hat Enterprise Linux 8", [(Distro.RHEL, "8")]),
        (
            'ID="opensuse-leap"\nVERSION_ID="15.5"\n',
            "openSUSE Leap 15.5",
            [(Distro.OPENSUSE, "Leap 15.5")],
        ),
        (
            'ID="azurelinux"\nVERSION_ID="3.0"\n',
            "Azure Linux 3.0",
            [(Distro.AZURE_LINUX, "3.0"), (Distro.AZURE_LINUX, "3")],
        ),
        (
            'ID="amzn"\nVERSION_ID="2023"\nPRETTY_NAME="Amazon Linux 2023"\n',
            "Amazon Linux 2023",
            [],
        ),
    ],
)
def test_release_from_os_release(
    tmp_path: Path, text: str, name: str, candidates: list[tuple[Distro, str]]
) -> None:
    release = detect_release(RootFS(str(os_release_root(tmp_path, text, linked=True))))
    assert release is not None
    assert release.name == name
    assert release.candidates == tuple(Ecosystem(d, r) for d, r in candidates)


def test_release_files_of_their_own_and_none(tmp_path: Path) -> None:
    root = tmp_path / "alpine"
    (root / "etc").mkdir(parents=True)
    (root / "etc/alpine-release").write_text("3.19.1\n")
    release = detect_release(RootFS(str(root)))
    assert release is not None and release.candidates == (Ecosystem(Distro.ALPINE, "v3.19"),)
    sid = tmp_path / "sid"
    (sid / "etc").mkdir(parents=True)
    (sid / "etc/debian_version").write_text("trixie/sid\n")
    release = detect_release(RootFS(str(sid)))
    assert release is not None and release.candidates == (Ecosystem(Distro.DEBIAN, "sid"),)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert detect_release(RootFS(str(scratch))) is None


def test_hostile_os_release_never_leaves_the_root_nor_hangs(tmp_path: Path) -> None:
    outside = tmp_path / "outside-os-release"
    outside.write_text("ID=rocky\nVERSION_ID=9\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    # an absolute link resolves inside the root (to nothing), never to the host's file
    (root / "etc/os-release").symlink_to(str(outside))
    (root / "usr/lib").mkdir(parents=True)
    os.mkfifo(root / "usr/lib/os-release")  # a FIFO would block a plain open()
    assert detect_release(RootFS(str(root))) is None
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").symlink_to("os-release")  # a loop
    assert detect_release(RootFS(str(root))) is None
    (root / "etc/os-release").unlink()
    (root / "etc/os-release").write_text("ID=alpine\nVERSION_ID=\x1b[2J3.19\n" + "X" * (1 << 17))
    assert detect_release(RootFS(str(root))) is None  # larger than any os-release: not read
    (root / "etc/os-release").write_text(
        'ID="alpine\nVERSION_ID=3.19\nPRETTY_NAME="\x1b]0;x\x07"\n'
    )
    release = detect_release(RootFS(str(root)))
    assert release is None or "\x1b" not in release.name


# --- source names: each manager's own tools say what pkgdb must ---------------------------


def test_dpkg_source_names_are_dpkg_querys(shared_fixtures: Path) -> None:
    for root in (Path("/"), shared_fixtures / "dpkg/rootfs/ubuntu-24.04-amd64-lxc-sample"):
        admindir = root / "var/lib/dpkg"
        listed = subprocess.run(
            ["dpkg-query", f"--admindir={admindir}", "-W", "-f",
             "${binary:Package}\t${Package}\t${source:Package}\t${source:Version}\n"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        expected = {}
        for line in listed.splitlines():
            _, name, source, version = line.split("\t")
            expected.setdefault(name, set()).add((source, version))
        packages = list_packages(root).packages
        assert len(packages) >= 300
        for package in packages:
            assert (package.source, package.source_version or package.version) in expected[
                package.name
            ], package


def test_rpm_source_names_are_rpms(shared_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "var/lib/rpm").mkdir(parents=True)
    shutil.copyfile(
        shared_fixtures / "rpm/sqlite/amazonlinux2023.rpmdb.sqlite",
        root / "var/lib/rpm/rpmdb.sqlite",
    )
    # rpm -qa --queryformat made this inside the container: name, ..., sourcerpm (column 6)
    rows = (shared_fixtures / "rpm/sqlite/amazonlinux2023.upstream-packages.csv").read_text()
    expected = {}
    for row in rows.splitlines():
        fields = row.split("¶")
        name, version, release, sourcerpm = fields[1], fields[2], fields[3], fields[5]
        if name == "gpg-pubkey":  # a key, no package: pkgdb leaves it out
            continue
        source = sourcerpm.removesuffix(".src.rpm").rsplit("-", 2)[0]
        expected[(name, version, release)] = source
    packages = [p for p in list_packages(root).packages if p.name != "gpg-pubkey"]
    assert len(packages) == len(expected) == 102
    for package in packages:
        assert package.source == expected[(package.name, package.version, package.release)]
    assert {p.source for p in packages if p.name == "amazon-linux-repo-cdn"} == {"system-release"}


def test_apk_origins_are_the_databases_o_lines(shared_fixtures: Path) -> None:
    root = shared_fixtures / MINIROOTFS
    text = (root / "lib/apk/db/installed").read_text()
    origins = {}
    for stanza in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines() if line[1:2] == ":")
        if "P" in fields:
            origins[fields["P"]] = fields["o"]
    packages = list_packages(root).packages
    assert {p.name: p.source for p in packages} == origins
    assert origins["libcrypto3"] == "openssl"


# --- Debian: the debootstrap root against the tracker's records -------------------------


@pytest.fixture(scope="module")
def bookworm() -> Path:
    return debootstrap_root()


def tracker_expectation(root: Path, release: str) -> set[tuple[str, str]]:
    """(binary package, CVE) the tracker file says apply, computed without vulndb: packages
    from dpkg-query, fixes from the JSON, order from dpkg --compare-versions."""
    tracker = json.loads(TRACKER.read_text())
    listed = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f",
         "${Package}\t${source:Package}\t${source:Version}\n"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    expected = set()
    for line in listed.splitlines():
        name, source, version = line.split("\t")
        for cve, entry in tracker.get(source, {}).items():
            state = entry["releases"].get(release)
            if state is None or state["status"] == "not-affected":
                continue
            fixed = state.get("fixed_version")
            if state["status"] == "resolved" and fixed == "0":
                continue
            if state["status"] in ("open", "undetermined") or dpkg_lt(version, fixed):
                expected.add((name, cve))
    return expected


def test_the_debootstrap_root_against_the_tracker(bookworm: Path, tmp_path: Path) -> None:
    db = make_db(tmp_path / "db.sqlite", TRACKER, ADVISORIES / "osv-derived")
    _, found = vulnerabilities(bookworm, db)
    got = {(v["package"]["name"], v["id"]) for v in found}
    expected = tracker_expectation(bookworm, "bookworm")
    assert got == expected
    # glibc's unfixed CVE-2010-4756 applies to every binary of the source glibc
    assert {"libc6", "libc-bin"} <= {name for name, cve in got if cve == "CVE-2010-4756"}
    entry = next(v for v in found if v["id"] == "CVE-2010-4756")
    assert entry["fixed_version"] is None and entry["package"]["source_name"] == "glibc"
    assert entry["severity"] == "low"  # the tracker's "unimportant"


def test_an_older_glibc_is_caught_and_merged_with_its_dsa(bookworm: Path, tmp_path: Path) -> None:
    """The root's libc6 set back to 2.36-9+deb12u2 (before DSA-5514-1's fix): CVE-2023-4911 is
    reported once per package, with the DSA as an alias, fixed in deb12u3."""
    root = copy_root(bookworm, tmp_path / "root")
    status = root / "var/lib/dpkg/status"
    text = status.read_text()
    version = subprocess.run(
        ["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f", "${Version}", "libc6"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    old = "2.36-9+deb12u2"
    assert dpkg_lt(old, "2.36-9+deb12u3") and not dpkg_lt(version, "2.36-9+deb12u3")
    status.write_text(text.replace(f"Version: {version}\n", f"Version: {old}\n"))
    db = make_db(tmp_path / "db.sqlite", TRACKER, ADVISORIES / "osv-derived")
    _, found = vulnerabilities(root, db)
    looney = [v for v in found if v["id"] == "CVE-2023-4911" or "CVE-2023-4911" in v["aliases"]]
    assert {v["package"]["name"] for v in looney} == {
        name for name, cve in tracker_expectation(root, "bookworm") if cve == "CVE-2023-4911"
    }
    assert looney and all(v["id"] == "CVE-2023-4911" for v in looney)
    assert all("DSA-5514-1" in v["aliases"] for v in looney)
    assert all(v["fixed_version"] == "2.36-9+deb12u3" for v in looney)
    assert all(v["cvss"] == 7.8 and v["severity"] == "high" for v in looney)


def test_a_release_without_data_is_a_problem_never_a_zero(bookworm: Path, tmp_path: Path) -> None:
    db = make_db(tmp_path / "db.sqlite", ADVISORIES / "alpine/3.20/main")
    report, found = vulnerabilities(bookworm, db)
    assert found == []
    [problem] = [p for p in report["problems"] if p["kind"] == "vulnerabilities"]
    assert problem["message"].startswith("no advisory data for Debian 12:")
    assert report["complete"] is False


def test_no_database_no_field(bookworm: Path) -> None:
    report = scan_root(bookworm, checks=["448"]).to_dict()
    assert "vulnerabilities" not in report


# --- rpm: a root made by rpmbuild and rpm, against AlmaLinux's real erratum ---------------


@pytest.fixture(scope="module")
def alma_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An AlmaLinux 10 root with expat 2.6.0-1.el10 (older than ALSA-2025:19403's
    2.7.1-1.el10_0.3) and expat-devel 2.7.2-1.el10 (newer), installed by rpm itself."""
    work = tmp_path_factory.mktemp("alma")
    root = work / "root"
    for name, version, release in (
        ("expat", "2.6.0", "1.el10"),
        ("expat-devel", "2.7.2", "1.el10"),
    ):
        top = work / name
        top.mkdir()
        spec = (
            f"Name: {name}\nVersion: {version}\nRelease: {release}\nSummary: t\nLicense: MIT\n"
            "BuildArch: x86_64\n%description\nt\n%install\nmkdir -p %{buildroot}/usr/share/"
            f"{name}\necho {name} > %{{buildroot}}/usr/share/{name}/README\n%files\n"
            f"/usr/share/{name}/README\n"
        )
        rpm = build_rpm(spec, top)
        if (root / "var/lib/rpm").exists():
            subprocess.run(
                ["rpm", "--root", str(root), "--dbpath", "/var/lib/rpm", "-i", "--nodeps",
                 "--noscripts", str(rpm)], check=True, capture_output=True,
            )  # fmt: skip
        else:
            install_rpm(root, rpm)
    (root / "etc").mkdir(exist_ok=True)
    (root / "etc/os-release").write_text('NAME="AlmaLinux"\nID="almalinux"\nVERSION_ID="10.0"\n')
    return root


def rpm_older(a: str, b: str) -> bool:
    """rpm's own labelCompare (python3-rpm under the system Python): a < b."""

    def evr(text: str) -> list[str]:
        epoch, _, rest = text.rpartition(":")
        version, _, release = rest.partition("-")
        return [epoch or "0", version, release]

    code = (
        "import rpm,sys,json; a,b=json.load(sys.stdin); print(rpm.labelCompare(tuple(a),tuple(b)))"
    )
    out = subprocess.run(
        ["/usr/bin/python3", "-c", code], input=json.dumps([evr(a), evr(b)]),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.strip() == "-1"


def test_an_rpm_root_against_almas_erratum(alma_root: Path, tmp_path: Path) -> None:
    if subprocess.run(["/usr/bin/python3", "-c", "import rpm"]).returncode != 0:
        pytest.skip("python3-rpm is not installed (install.sh --test installs it)")
    db = make_db(tmp_path / "db.sqlite", ALMA)
    _, found = vulnerabilities(alma_root, db)
    erratum = json.loads(ALMA.read_text())
    fixes = {
        p["name"]: f"{p['epoch']}:{p['version']}-{p['release']}"
        for p in erratum["pkglist"]["packages"]
    }
    installed = {"expat": "2.6.0-1.el10", "expat-devel": "2.7.2-1.el10"}
    expected = {name for name, version in installed.items() if rpm_older(version, fixes[name])}
    assert expected == {"expat"}
    assert {v["package"]["name"] for v in found} == expected
    [entry] = found
    assert entry["id"] == "ALSA-2025:19403" and entry["aliases"] == ["CVE-2025-59375"]
    assert entry["fixed_version"] == "0:2.7.1-1.el10_0.3"
    assert entry["package"]["version"] == "2.6.0-1.el10" and entry["package"]["manager"] == "rpm"


@pytest.mark.parametrize(
    ("fixture", "os_release", "said"),
    [
        (
            "bdb/ubi-8.0-full.Packages",
            'ID="rhel"\nVERSION_ID="8.0"\n',
            "Red Hat Enterprise Linux 8",
        ),
        (
            "sqlite/amazonlinux2023.rpmdb.sqlite",
            'ID="amzn"\nVERSION_ID="2023"\nPRETTY_NAME="Amazon Linux 2023"\n',
            "Amazon Linux 2023",
        ),
    ],
)
def test_the_rpm_fixture_roots_say_what_has_no_data(
    shared_fixtures: Path, tmp_path: Path, fixture: str, os_release: str, said: str
) -> None:
    root = tmp_path / "root"
    name = "Packages" if fixture.startswith("bdb") else "rpmdb.sqlite"
    (root / "var/lib/rpm").mkdir(parents=True)
    shutil.copyfile(shared_fixtures / "rpm" / fixture, root / "var/lib/rpm" / name)
    (root / "etc").mkdir()
    (root / "etc/os-release").write_text(os_release)
    db = make_db(tmp_path / "db.sqlite", ALMA, ADVISORIES / "rocky")
    report, found = vulnerabilities(root, db)
    assert found == []
    messages = [p["message"] for p in report["problems"] if p["kind"] == "vulnerabilities"]
    assert messages and messages[0].startswith(f"no advisory data for {said}:")


# --- Alpine: the 3.19.1 minirootfs against Alpine's real v3.19 secfixes ------------------


def apk_older(a: str, b: str) -> bool:
    """A second apk order: nexB's univers where it parses both. For versions it refuses (the
    `_git` snapshots) only what apk-tools' rules make plain: dotted numbers that differ before
    either ends (1.2.4_git... > 1.1.15), or the same text up to `-r`, compared by release
    number. Anything else fails the test rather than guess."""
    from univers.versions import AlpineLinuxVersion, InvalidVersion

    try:
        return bool(AlpineLinuxVersion(a) < AlpineLinuxVersion(b))
    except (InvalidVersion, ValueError, TypeError):
        pass
    numbers = [tuple(map(int, re.match(r"[0-9]+(?:\.[0-9]+)*", v)[0].split("."))) for v in (a, b)]
    for x, y in zip(*numbers, strict=False):
        if x != y:
            return x < y
    head_a, _, release_a = a.rpartition("-r")
    head_b, _, release_b = b.rpartition("-r")
    assert head_a == head_b, f"no second referee for {a} < {b}"
    return int(release_a) < int(release_b)


def secfixes_expectation(root: Path) -> set[tuple[str, str, str]]:
    """(package, id, fix) from the secdb files read with json and the DB's own o:/V: lines."""
    text = (root / "lib/apk/db/installed").read_text()
    installed = []
    for stanza in text.split("\n\n"):
        fields = dict(line.split(":", 1) for line in stanza.splitlines() if line[1:2] == ":")
        if "P" in fields:
            installed.append((fields["P"], fields["V"], fields["o"]))
    expected = set()
    for path in ALPINE_319.glob("*.json"):
        document = json.loads(path.read_text())
        for origin, version, name in [(o, v, p) for p, v, o in installed]:
            if document["name"] != origin:
                continue
            for fix, ids in document["secfixes"].items():
                if fix == "0":
                    continue
                if apk_older(version, fix):
                    for entry in ids:
                        expected.add((name, entry.split()[0], fix))
    return expected


@pytest.fixture
def minirootfs(shared_fixtures: Path, tmp_path: Path) -> Path:
    """A copy of the 3.19.1 minirootfs sample with its etc/alpine-release (PROVENANCE: 3.19.1),
    which the sample leaves out."""
    root = tmp_path / "alpine"
    shutil.copytree(shared_fixtures / MINIROOTFS, root, symlinks=True)
    (root / "etc/alpine-release").write_text("3.19.1\n")
    return root


def test_the_alpine_minirootfs_against_real_secfixes(minirootfs: Path, tmp_path: Path) -> None:
    if not ALPINE_319.is_dir():
        pytest.fail("the Alpine v3.19 secfixes fixtures are missing")
    db = make_db(tmp_path / "db.sqlite", ALPINE_319)
    _, found = vulnerabilities(minirootfs, db)
    got = {(v["package"]["name"], v["id"], v["fixed_version"]) for v in found}
    expected = secfixes_expectation(minirootfs)
    # busybox's three binaries x six CVEs fixed after 1.36.1-r15, musl's two x three after
    # _git20230717-r4 (the `_git` case univers refuses: the -r referee decides)
    assert len(expected) >= 20
    assert {(name, cve) for name, cve, _ in got} == {(name, cve) for name, cve, _ in expected}
    # each reported fix is the advisory's own, and really newer than what is installed
    for name, _, fix in got:
        version = next(v["package"]["version"] for v in found if v["package"]["name"] == name)
        assert apk_older(version, fix)
    by_binary = {v["package"]["name"]: v["package"]["source_name"] for v in found}
    assert by_binary == {
        "busybox": "busybox", "busybox-binsh": "busybox", "ssl_client": "busybox",
        "musl": "musl", "musl-utils": "musl",
    }  # fmt: skip


def test_an_alpine_root_of_another_branch_is_said(minirootfs: Path, tmp_path: Path) -> None:
    (minirootfs / "etc/alpine-release").write_text("3.21.0\n")
    db = make_db(tmp_path / "db.sqlite", ALPINE_319)
    report, found = vulnerabilities(minirootfs, db)
    assert found == []
    assert any(
        p["message"].startswith("no advisory data for Alpine v3.21:") for p in report["problems"]
    )


def test_no_release_is_a_problem(shared_fixtures: Path, tmp_path: Path) -> None:
    db = make_db(tmp_path / "db.sqlite", ALPINE_319 if ALPINE_319.is_dir() else TRACKER)
    report, found = vulnerabilities(shared_fixtures / MINIROOTFS, db)  # the sample lacks it
    assert found == []
    assert any("names no distribution release" in p["message"] for p in report["problems"])
