"""vulndb attacked with inputs made here: hostile roots, advisory databases and advisory files.
Each must end in a verdict, a clear error or a `vulnerabilities` problem: never a traceback,
a hang, a silent clean, or a byte read or written where it does not belong."""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
from jsonschema.validators import validator_for

from console.entry import main as scan_root_main
from console.report_schema import parse_report
from pkgdb import Package
from pkgdb.rootfs import RootFS
from scanner import cli, scan_root
from vulndb.match import match_packages
from vulndb.records import Distro, Ecosystem
from vulndb.release import detect_release
from vulndb.store import StoreError, VulnDB

SHARED = Path(os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def import_cli(db: Path, *sources: Path | str) -> int:
    return scan_root_main(["vulndb", "import", "--db", str(db), *map(str, sources)])


def apk_root(base: Path, *packages: tuple[str, str, str], release: str = "3.20.3\n") -> Path:
    """An apk root (name, version, origin) whose etc/alpine-release says `release`."""
    root = base / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/alpine-release").write_text(release)
    stanzas = "".join(f"P:{n}\nV:{v}\nA:x86_64\no:{o}\n\n" for n, v, o in packages)
    (root / "lib/apk/db/installed").write_text(stanzas)
    return root


def secfixes(directory: Path, name: str, fixes: dict[str, list[str]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"distroversion": "v3.20", "name": name, "secfixes": fixes}))
    return path


def osv_record(directory: Path, ident: str, package: str, fixed: str, **extra: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "schema_version": "1.6.0",
        "id": ident,
        "modified": "2024-07-02T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": "Alpine:v3.20", "name": package},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": fixed}]}
                ],
            }
        ],
        **extra,
    }
    path = directory / f"{len(list(directory.iterdir()))}.json"
    path.write_text(json.dumps(record))
    return path


def scan_json(root: Path, db: Path, out: Path) -> tuple[int, dict[str, object]]:
    code = cli.main(
        [str(root), "--vulndb", str(db), "--checks", "448", "--quiet", "--format", "json"]
        + ["--output", str(out)]
    )
    assert code != cli.EXIT_INTERNAL
    return code, json.loads(out.read_text()) if out.exists() else {}


def vuln_problems(report: dict[str, object]) -> list[str]:
    problems = report["problems"]
    assert isinstance(problems, list)
    return [p["message"] for p in problems if p["kind"] == "vulnerabilities"]


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


# --- one advisory must not poison the database -------------------------------------------


def test_an_oversized_unit_is_refused_at_import_not_stored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Found: one CVE listed under 5,000 fix versions imported fine, then every later scan of
    the release failed ("a stored range list is not a list of sane size": every package not
    checked). The import now refuses the source, and a sane one beside it still works."""
    db = tmp_path / "db.sqlite"
    hostile = secfixes(
        tmp_path / "hostile", "zlib", {f"1.{i}-r0": ["CVE-2099-0001"] for i in range(5000)}
    )
    sane = secfixes(tmp_path / "sane", "musl", {"2.0-r0": ["CVE-2099-0002"]})
    assert import_cli(db, hostile, sane) == 2
    err = capsys.readouterr().err
    assert "over the stored bounds" in err and "nothing imported from it" in err
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"), ("musl", "1.0-r0", "musl"))
    _, report = scan_json(root, db, tmp_path / "r.json")
    assert [(v["id"], v["package"]["name"]) for v in report["vulnerabilities"]] == [
        ("CVE-2099-0002", "musl")
    ]
    assert not [m for m in vuln_problems(report) if "sane size" in m]


def test_a_field_over_the_read_bound_is_refused_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Two 600 kB fix versions: each string is within the parser's bound, their JSON range
    list is not within the store's: refused at import rather than stored unreadable."""
    db = tmp_path / "db.sqlite"
    big = "1." + "1" * 600_000
    hostile = secfixes(
        tmp_path / "h", "zlib", {f"{big}{i}-r0": ["CVE-2099-0001"] for i in range(2)}
    )
    assert import_cli(db, hostile) == 2
    assert "over the stored bounds" in capsys.readouterr().err


def test_many_aliases_import_match_and_are_capped_in_the_report(tmp_path: Path) -> None:
    """A DSA-like record naming 100 upstream CVEs (Chromium's do): stored (the read bound was
    64, which made such a record poison every scan), matched, and the report's aliases capped."""
    db = tmp_path / "db.sqlite"
    upstream = [f"CVE-2099-{i:04d}" for i in range(100)]
    osv_record(tmp_path / "osv", "ALPINE-X-1", "zlib", "2.0-r0", upstream=upstream)
    assert import_cli(db, tmp_path / "osv") == 0
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    _, report = scan_json(root, db, tmp_path / "r.json")
    parse_report(report)
    (entry,) = report["vulnerabilities"]
    assert entry["id"] in ("ALPINE-X-1", *upstream)
    assert 0 < len(entry["aliases"]) <= 32


# --- hostile roots --------------------------------------------------------------------------


def _fifo(path: Path) -> None:
    os.mkfifo(path)


HOSTILE_OS_RELEASE = {
    "outside-absolute": lambda p: p.symlink_to("/etc/passwd"),
    "outside-relative": lambda p: p.symlink_to("../../../../../../../../etc/passwd"),
    "proc-self": lambda p: p.symlink_to("/proc/self/environ"),
    "fifo": _fifo,
    "directory": lambda p: p.mkdir(),
    "loop": lambda p: p.symlink_to("os-release"),
    "ten-megabytes": lambda p: p.write_bytes(b"ID=alpine\n" + b"X" * (10 << 20)),
    "binary": lambda p: p.write_bytes(bytes(range(256)) * 64),
    "nul-bytes": lambda p: p.write_bytes(b"ID=alp\0ine\nVERSION_ID=3.\0019\n"),
    "ten-thousand-lines": lambda p: p.write_text("ID=alpine\n" + "FOO=bar\n" * 10_000),
    "weird-quoting": lambda p: p.write_text('ID=\'alp"ine\nVERSION_ID="3.19\\\n'),
    "dotdot-version": lambda p: p.write_text('ID=alpine\nVERSION_ID="../../x"\n'),
    "newline-version": lambda p: p.write_text('ID=alpine\nVERSION_ID="3.19\n"\n'),
    "unicode-digits": lambda p: p.write_text("ID=alpine\nVERSION_ID=٣.١٩\n"),
    "no-version": lambda p: p.write_text("ID=alpine\n"),
    "escapes": lambda p: p.write_text('ID=foo\nPRETTY_NAME="\x1b[2J\x1b]0;pwned\x07"\n'),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_OS_RELEASE))
def test_hostile_os_release_gives_no_release_or_a_problem(tmp_path: Path, case: str) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    HOSTILE_OS_RELEASE[case](root / "etc/os-release")
    started = time.monotonic()
    release = detect_release(RootFS(root))
    assert time.monotonic() - started < 5
    if release is not None:
        assert release.name.isprintable() and len(release.name) <= 80
        # nothing from outside the root (the host's passwd names no distro), and a release
        # spelling advisories could use: ASCII "vN.N" for Alpine, never a path or a newline
        for candidate in release.candidates:
            assert candidate.distro is Distro.ALPINE
            assert re.fullmatch(r"v[0-9]+\.[0-9]+", candidate.release), candidate
    # whatever was found, a scan against a database says so for the package it cannot judge
    db = tmp_path / "db.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})) == 0
    package = Package(name="zlib", version="1.0-r0", manager="apk", source="zlib")
    with VulnDB.open_read(db) as store:
        result = match_packages(store, release, [package])
    assert result.matches or result.gaps


def test_root_files_of_the_package_managers_are_hostile_too(tmp_path: Path) -> None:
    """apk `o:` repeated, empty, escapes; a dpkg status with garbage Source: lines: judged or
    said, never a crash."""
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    (root / "lib/apk/db/installed").write_text(
        "P:zlib\nV:1.0-r0\nA:x86_64\no:\no:zlib\no:zlib\n\n"
        "P:musl\nV:1.0-r0\nA:x86_64\no:\x1b[2J\n\n"
        "P:busybox\nV:1.0-r0\nA:x86_64\no:" + "b" * 100_000 + "\n\n"
    )
    db = tmp_path / "db.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})) == 0
    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    parse_report(report)
    assert any(v["package"]["name"] == "zlib" for v in report["vulnerabilities"])
    dpkg = tmp_path / "deb"
    (dpkg / "var/lib/dpkg").mkdir(parents=True)
    (dpkg / "etc").mkdir()
    (dpkg / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    (dpkg / "var/lib/dpkg/status").write_text(
        "Package: a\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Source: (1.0\n\n"
        "Package: b\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Source: x (\x1b[2J) (y)\n\n"
        "Package: c\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Source: \n\n"
    )
    report = scan_root(dpkg, checks=["448"], vulndb=db).to_dict()
    parse_report(report)
    assert report["complete"] is False
    assert any("no advisory data for Debian 12" in m for m in vuln_problems(report))


# --- hostile advisory databases given to --vulndb --------------------------------------------


def _foreign(path: Path, script: str) -> None:
    with sqlite3.connect(path) as connection:
        connection.executescript(script)
    connection.close()


GOOD_META = "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('schema', '2');"
HOSTILE_DB = {
    "dev-zero": lambda p: p.symlink_to("/dev/zero"),
    "proc-environ": lambda p: p.symlink_to("/proc/self/environ"),  # "regular", size 0
    "etc-passwd": lambda p: p.symlink_to("/etc/passwd"),
    "fifo": _fifo,
    "directory": lambda p: p.mkdir(),
    "empty": lambda p: p.write_bytes(b""),
    "garbage": lambda p: p.write_bytes(b"SQLite format 3\0" + b"\xff" * 4096),
    "views": lambda p: _foreign(
        p,
        GOOD_META + "CREATE VIEW sources AS SELECT 1 AS id; CREATE VIEW units AS SELECT 1 AS id;",
    ),
    "foreign-types": lambda p: _foreign(
        p,
        GOOD_META + "CREATE TABLE sources (id, kind, label, imported_at, newest);"
        "INSERT INTO sources VALUES (-1, 7, x'00', NULL, 3.5);"
        "CREATE TABLE units (id, distro, release, package, kind, advisory, source_id, digest,"
        " aliases, summary, severity, cvss_vector, cvss_score, modified, ranges, versions);"
        "INSERT INTO units VALUES ('x', 'alpine', 'v3.20', 'zlib', 'nope', NULL, -1, 1,"
        " '{\"a\":1}', x'ff', 'high', 5, 'nan', NULL, '[[1,2,3,4]]', 'null');"
        "INSERT INTO units VALUES (-5, 'alpine', 'v3.20', 'zlib', 'osv', 'A', -1, 1,"
        " '[1]', 'x', 99, NULL, 11.0, NULL, '[]', '[]');"
        "CREATE TABLE spans (unit, keyed, introduced, fixed, last_affected, limit_key,"
        " fixed_text);"
        "INSERT INTO spans VALUES ('x', 1, 'text', 5, NULL, NULL, x'00');"
        "INSERT INTO spans VALUES (-5, 'yes', NULL, NULL, NULL, NULL, 7);",
    ),
    "no-spans": lambda p: _foreign(
        p, GOOD_META + "CREATE TABLE sources (id); CREATE TABLE units (id);"
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_DB))
def test_a_hostile_database_is_refused_or_a_problem_never_written(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    db = tmp_path / "db.sqlite"
    HOSTILE_DB[case](db)
    before = snapshot(db) if db.is_file() and not db.is_symlink() else None
    listing = sorted(os.listdir(tmp_path))
    started = time.monotonic()
    code, report = scan_json(root, db, tmp_path / "r.json")
    assert time.monotonic() - started < 20
    if code == cli.EXIT_USAGE:
        assert str(db) in capsys.readouterr().err
    else:
        assert report["complete"] is False and vuln_problems(report), report["problems"]
        assert report["vulnerabilities"] == []
    if before is not None:
        assert snapshot(db) == before
    assert sorted(os.listdir(tmp_path)) in (listing, sorted([*listing, "r.json"]))


def test_a_wal_database_in_a_read_only_directory(tmp_path: Path) -> None:
    """Someone else's WAL-mode database whose directory we may not write: a -shm cannot be
    made. Matched, or refused cleanly; the file itself is never written."""
    base = tmp_path / "ro"
    base.mkdir()
    db = base / "db.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})) == 0
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
    connection.close()
    before = snapshot(db)
    base.chmod(0o555)
    try:
        root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
        code, report = scan_json(root, db, tmp_path / "r.json")
        if code != cli.EXIT_USAGE:
            assert report["vulnerabilities"] or vuln_problems(report)
        assert snapshot(db) == before
    finally:
        base.chmod(0o755)


def test_a_huge_unit_of_a_matching_package_is_bounded(tmp_path: Path) -> None:
    """A database someone else filled: 100,000 spans on one unit of an installed package.
    Matched in bounded time, or refused: never a hang or a crash."""
    db = tmp_path / "db.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})) == 0
    with sqlite3.connect(db) as connection:
        (unit,) = connection.execute("SELECT id FROM units").fetchone()
        connection.executemany(
            "INSERT INTO spans VALUES (?, 0, NULL, NULL, NULL, NULL, ?)",
            [(unit, f"9.{i}-r0") for i in range(100_000)],
        )
    connection.close()
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    started = time.monotonic()
    _, report = scan_json(root, db, tmp_path / "r.json")
    assert time.monotonic() - started < 30
    assert [v["id"] for v in report["vulnerabilities"]] == ["CVE-2099-1"] or vuln_problems(report)


# --- hostile imports ------------------------------------------------------------------------


def test_import_never_writes_through_a_symlink_to_a_foreign_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    victim = tmp_path / "passwd"
    victim.write_text("root:x:0:0:root:/root:/bin/bash\n")
    before = snapshot(victim)
    link = tmp_path / "db.sqlite"
    link.symlink_to(victim)
    source = secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})
    assert import_cli(link, source) == 2
    assert snapshot(victim) == before
    assert "Traceback" not in capsys.readouterr().err
    assert import_cli(Path("/etc/passwd"), source) == 2


def test_big_imports_are_bounded_in_time_and_memory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """10 kB versions, 4,000 ranges, a 1 MB id, 50,000 aliases, a unit twice with conflicting
    fixes: imported or refused, within generous but finite bounds."""
    db = tmp_path / "db.sqlite"
    huge = tmp_path / "huge"
    secfixes(huge, "zlib", {"1." + "9" * 10_000 + "-r0": ["CVE-2099-1"]})
    secfixes(huge, "musl", {f"1.{i}-r0": ["CVE-2099-2"] for i in range(4000)})
    osv = tmp_path / "osv"
    osv_record(osv, "A" * 1_000_000, "busybox", "2.0-r0")
    osv_record(osv, "ALPINE-X-3", "curl", "2.0-r0")
    aliases = tmp_path / "aliases"
    osv_record(aliases, "ALPINE-X-2", "bash", "2.0-r0", aliases=[f"X-{i}" for i in range(50_000)])
    twice = tmp_path / "twice"
    osv_record(twice, "ALPINE-X-3", "curl", "3.0-r0")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    codes = [import_cli(db, source) for source in (huge, osv, aliases, twice)]
    assert time.monotonic() - started < 30
    # ru_maxrss is in kB on Linux: well under 1 GB more than before
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 1 << 20
    # 50,000 aliases are over what the store reads back: that source alone is refused
    assert codes == [0, 0, 2, 0]
    assert "Traceback" not in capsys.readouterr().err
    root = apk_root(
        tmp_path,
        ("zlib", "1.0-r0", "zlib"),
        ("musl", "1.0-r0", "musl"),
        ("curl", "2.5-r0", "curl"),
        ("bash", "1.0-r0", "bash"),
        ("busybox", "1.0-r0", "busybox"),
    )
    _, report = scan_json(root, db, tmp_path / "r.json")
    parse_report(report)
    found = {v["package"]["name"] for v in report["vulnerabilities"]}
    assert "musl" in found
    # a 10 kB fix is a version apk refuses: said for the package, never a silent pass
    assert "zlib" in found or any(m.startswith("zlib ") for m in vuln_problems(report))
    assert "busybox" in found and "bash" not in found
    assert all(len(m) < 1000 for m in vuln_problems(report))
    # the same unit imported again with another fix replaces it: 2.5 is affected by `< 3.0`
    assert "curl" in found
    # every entry fits what the console stores
    assert all(len(v["id"]) <= 128 for v in report["vulnerabilities"])


# --- reports with hostile advisory content ---------------------------------------------------


@pytest.fixture
def hostile_report(tmp_path: Path) -> tuple[Path, Path]:
    db = tmp_path / "db.sqlite"
    osv = tmp_path / "osv"
    osv_record(
        osv,
        "CVE-2099-\x1b[31mRED",
        "zlib",
        "2.0-r0",
        summary="\x1b[2J\x1b[H" + "s" * 10_000 + "\u202e\r\n",
        aliases=[f"ALIAS-{i}-\x1b[1m" for i in range(100)] + ["I" * 5000],
    )
    # a fix apk refuses, and a 1 MB id: a problem whose message is bounded and escaped
    osv_record(osv, "X\x1b[2J" * 200_000, "musl", "2.0-r0\x1b]0;title\x07")
    assert import_cli(db, osv) == 0
    return apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"), ("musl", "1.0-r0", "musl")), db


def test_hostile_content_reaches_no_terminal_raw(
    hostile_report: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, db = hostile_report
    capsys.readouterr()
    cli.main([str(root), "--vulndb", str(db), "--checks", "448"])
    table = capsys.readouterr().out
    assert "Vulnerabilities: 1" in table
    assert "\x1b" not in table and "\x07" not in table and "\u202e" not in table
    assert "not checked against" in table and len(table) < 100_000


def test_hostile_content_makes_valid_json_and_sarif(
    hostile_report: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    root, db = hostile_report
    capsys.readouterr()
    cli.main([str(root), "--vulndb", str(db), "--checks", "448", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    parse_report(report)
    (entry,) = report["vulnerabilities"]
    assert len(entry["aliases"]) <= 32 and len(entry["summary"]) <= 4096
    assert all(len(m) < 1000 for m in vuln_problems(report)) and report["complete"] is False
    cli.main([str(root), "--vulndb", str(db), "--checks", "448", "--format", "sarif"])
    sarif = json.loads(capsys.readouterr().out)
    schema_path = SHARED / "schemas" / "sarif-schema-2.1.0.json"
    if not schema_path.is_file():
        pytest.skip(f"../shared is absent ({schema_path} not found)")
    schema = json.loads(schema_path.read_text())
    validator_for(schema)(schema, format_checker=jsonschema.FormatChecker()).validate(sarif)


# --- correctness: verdicts against the managers' own comparison --------------------------------


def dpkg_lt(a: str, b: str) -> bool:
    return subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0


def rpm_lt(a: str, b: str) -> bool:
    def evr(text: str) -> tuple[str, str, str]:
        epoch, _, rest = text.rpartition(":")
        version, _, release = rest.rpartition("-")
        return (epoch or "0", version, release)

    code = f"import rpm,sys; print(rpm.labelCompare({evr(a)!r}, {evr(b)!r}))"
    out = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("no rpm module for /usr/bin/python3")
    return out.stdout.strip() == "-1"


@pytest.mark.parametrize(
    ("installed", "fixed"),
    [
        ("1:1.0-1", "1.0-2"),  # newer only by epoch
        ("1.0-2", "1:1.0-1"),
        ("1.0-1+b1", "1.0-2"),  # a binNMU of the vulnerable upload
        ("1.0-1+b1", "1.0-1+b1"),
        ("1.0-1", "1.0-1+b1"),
        ("1.0~rc1-1", "1.0-1"),
        ("0:1.0-1", "1.0-1"),
    ],
)
def test_dpkg_verdicts_are_dpkgs(tmp_path: Path, installed: str, fixed: str) -> None:
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg")
    tracker = tmp_path / "tracker.json"
    tracker.write_text(
        json.dumps(
            {
                "foo": {
                    "CVE-2099-1": {
                        "releases": {
                            "bookworm": {
                                "status": "resolved",
                                "fixed_version": fixed,
                                "urgency": "high",
                                "repositories": {"bookworm": fixed},
                            }
                        }
                    }
                }
            }
        )
    )
    db = tmp_path / "db.sqlite"
    assert import_cli(db, tracker) == 0
    package = Package(
        name="libfoo1", version=installed, manager="dpkg", source="foo", source_version=None
    )
    release = detect_release(RootFS(_debian_root(tmp_path)))
    with VulnDB.open_read(db) as store:
        result = match_packages(store, release, [package])
    assert not result.gaps
    assert bool(result.matches) == dpkg_lt(installed, fixed), (installed, fixed)


def _debian_root(tmp_path: Path) -> Path:
    root = tmp_path / "deb"
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/os-release").write_text("ID=debian\nVERSION_ID=12\n")
    return root


def test_a_binnmu_is_judged_by_its_source_version(tmp_path: Path) -> None:
    """`Source: foo (1.0-1)` with Version 1.0-1+b1: the tracker's fix 1.0-2 is of the source,
    so the binNMU is affected (its source is 1.0-1), as dpkg orders the source versions."""
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg")
    test_dpkg_verdicts_are_dpkgs(tmp_path, "1.0-1", "1.0-2")
    db = tmp_path / "db.sqlite"
    package = Package(
        name="libfoo1", version="1.0-1+b1", manager="dpkg", source="foo", source_version="1.0-1"
    )
    release = detect_release(RootFS(_debian_root(tmp_path)))
    with VulnDB.open_read(db) as store:
        result = match_packages(store, release, [package])
    assert [m.fixed for m in result.matches] == ["1.0-2"]


def test_the_table_escapes_were_checked_by_a_test_that_can_fail() -> None:
    """The escape assertions above are meaningful: a raw ESC would be seen."""
    assert "\x1b" in "x\x1b[2Jy"


def test_store_error_is_what_a_foreign_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    path.write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(StoreError):
        VulnDB.open_read(path)
    assert Ecosystem(Distro.ALPINE, "v3.20").release == "v3.20"


@pytest.mark.parametrize(
    ("epoch", "version", "fixed"),
    [
        (None, "1.0-1", "0:1.0-2"),  # no epoch against an explicit 0
        (0, "1.0-2", "1.0-2"),
        (None, "1.0-2", "0:1.0-2"),
        (1, "1.0-1", "1.0-2"),  # newer only by epoch
        (None, "2.0-1", "1:1.0-1"),  # an erratum's epoch beats any version
        (0, "1.0-1.el9_2", "1.0-1.el9_10"),
        (None, "1.0~rc1-1", "1.0-1"),
        (None, "1.0^post-1", "1.0-1"),
    ],
)
def test_rpm_verdicts_are_rpms(tmp_path: Path, epoch: int | None, version: str, fixed: str) -> None:
    record = tmp_path / "osv" / "ALSA.json"
    record.parent.mkdir()
    record.write_text(
        json.dumps(
            {
                "id": "ALSA-2099:1",
                "modified": "2099-01-01T00:00:00Z",
                "affected": [
                    {
                        "package": {"ecosystem": "AlmaLinux:9", "name": "foo"},
                        "ranges": [
                            {
                                "type": "ECOSYSTEM",
                                "events": [{"introduced": "0"}, {"fixed": fixed}],
                            }
                        ],
                    }
                ],
            }
        )
    )
    db = tmp_path / "db.sqlite"
    assert import_cli(db, record.parent) == 0
    upstream, _, release_field = version.rpartition("-")
    package = Package(
        name="foo", version=upstream, manager="rpm", epoch=epoch, release=release_field
    )
    root = tmp_path / "alma"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").write_text('ID="almalinux"\nVERSION_ID="9.4"\n')
    with VulnDB.open_read(db) as store:
        result = match_packages(store, detect_release(RootFS(root)), [package])
    assert not result.gaps
    installed = f"{epoch or 0}:{version}"
    assert bool(result.matches) == rpm_lt(installed, fixed), (installed, fixed)


@pytest.mark.parametrize(
    ("installed", "fixed", "affected"),
    [
        ("1.2.3_git20230101-r0", "1.2.3-r0", False),  # _git is after the release in apk
        ("1.2.2_git20230101-r0", "1.2.3-r0", True),
        ("1.2.3_git20230101-r0", "1.2.3_p1-r0", True),
        ("1.2.3_p1-r0", "1.2.3-r1", False),  # a patch level after the release
        ("1.2.3-r10", "1.2.3-r9", False),  # -r numerically
        ("1.2.3_rc1-r0", "1.2.3_alpha1-r0", False),
        ("1.2.3_pre1-r0", "1.2.3_rc1-r0", True),
        ("1.2.3a-r0", "1.2.3-r0", False),
    ],
)
def test_apk_orderings(tmp_path: Path, installed: str, fixed: str, affected: bool) -> None:
    """apk-tools' own order (suffixes: _alpha < _beta < _pre < _rc < none < _cvs < _svn <
    _git < _hg < _p; a letter after the number is later): checked by the verdict."""
    db = tmp_path / "db.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "foo", {fixed: ["CVE-2099-1"]})) == 0
    root = apk_root(tmp_path, ("foo", installed, "foo"))
    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    assert not vuln_problems(report)
    assert bool(report["vulnerabilities"]) == affected


def test_an_orphaned_unit_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    """Found: a unit whose source row is gone (a database edited by hand) was hit by its spans
    but not read back by advisories(): KeyError, exit 5. Now a `vulnerabilities` problem."""
    db = tmp_path / "db.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})) == 0
    with sqlite3.connect(db) as connection:
        connection.execute("UPDATE units SET source_id = 999")
    connection.close()
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    _, report = scan_json(root, db, tmp_path / "r.json")
    assert report["vulnerabilities"] == [] and report["complete"] is False
    assert any("has no stored source" in m for m in vuln_problems(report))


@pytest.mark.parametrize("case", ["fifo", "dev-zero", "parent-is-a-file", "db-is-a-directory"])
def test_import_of_hostile_paths_is_refused_without_a_hang(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})
    db = tmp_path / "db.sqlite"
    (tmp_path / "file").write_text("x")
    if case == "fifo":
        os.mkfifo(tmp_path / "fifo")
        source = tmp_path / "fifo"
    elif case == "dev-zero":
        source = Path("/dev/zero")
    elif case == "parent-is-a-file":
        db = tmp_path / "file" / "db.sqlite"
    else:
        db = tmp_path / "s"
    started = time.monotonic()
    assert import_cli(db, source) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith("scan-root vulndb: ") and "Traceback" not in err
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("case", ["views", "no-spans", "foreign-types"])
def test_status_of_a_foreign_database_is_an_error(
    tmp_path: Path, case: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite"
    HOSTILE_DB[case](db)
    before = snapshot(db)
    code = scan_root_main(["vulndb", "status", "--db", str(db)])
    assert code in (0, 2)
    assert "Traceback" not in capsys.readouterr().err
    assert snapshot(db) == before


def test_an_os_release_planted_outside_the_root_is_never_read(tmp_path: Path) -> None:
    """A symlink climbing out of the root to a file that would name a release: the root is
    read as if it were /, so `../../..` stays inside and finds nothing."""
    (tmp_path / "planted").write_text("ID=alpine\nVERSION_ID=3.19.1\n")
    root = tmp_path / "deep" / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/os-release").symlink_to("../../../planted")
    (root / "etc/alpine-release").symlink_to(tmp_path / "planted")
    assert detect_release(RootFS(root)) is None
    (root / "planted").write_text("ID=debian\nVERSION_ID=12\n")  # what ../../../ resolves to
    release = detect_release(RootFS(root))
    assert release is not None and release.name == "Debian 12"


def test_a_binnmu_from_a_status_file_end_to_end(tmp_path: Path) -> None:
    """dpkg status `Source: foo (1.0-1)`, Version 1.0-1+b1: judged by the source version
    against the tracker's source fix, as dpkg orders the source versions."""
    if shutil.which("dpkg") is None:
        pytest.skip("no dpkg")
    root = _debian_root(tmp_path)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(
        "Package: libfoo1\nStatus: install ok installed\nVersion: 1.0-1+b1\n"
        "Architecture: amd64\nSource: foo (1.0-1)\n\n"
        "Package: bar\nStatus: install ok installed\nVersion: 1:0.9-1\n"
        "Architecture: amd64\n\n"
    )
    tracker = tmp_path / "tracker.json"
    fixes = {"foo": "1.0-2", "bar": "1.0-1"}  # bar is newer only by its epoch
    tracker.write_text(
        json.dumps(
            {
                name: {
                    f"CVE-2099-{i}": {
                        "releases": {
                            "bookworm": {
                                "status": "resolved",
                                "fixed_version": fix,
                                "urgency": "high",
                                "repositories": {"bookworm": fix},
                            }
                        }
                    }
                }
                for i, (name, fix) in enumerate(fixes.items())
            }
        )
    )
    db = tmp_path / "db.sqlite"
    assert import_cli(db, tracker) == 0
    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    parse_report(report)
    got = {(v["package"]["name"], v["fixed_version"]) for v in report["vulnerabilities"]}
    assert dpkg_lt("1.0-1", "1.0-2") and not dpkg_lt("1:0.9-1", "1.0-1")
    assert got == {("libfoo1", "1.0-2")}
    (entry,) = report["vulnerabilities"]
    assert entry["package"]["source_name"] == "foo"


def test_twenty_thousand_advisories_on_one_package_are_judged_quickly(tmp_path: Path) -> None:
    """Found: merging aliases compared each match with every kept one: 20,000 advisories of
    one package took 37 s. Each is one entry, in seconds."""
    db = tmp_path / "db.sqlite"
    ids = [f"CVE-2099-{i}" for i in range(20_000)]
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ids})) == 0
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    started = time.monotonic()
    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    assert time.monotonic() - started < 10
    assert sorted(v["id"] for v in report["vulnerabilities"]) == sorted(ids)


def test_alias_merging_follows_shared_ids_transitively_once(tmp_path: Path) -> None:
    """A names X, B names Y, C names X and Y: C joins A (the first sharing an id); D naming Y
    then joins A too, which now names Y. B stays alone."""
    db = tmp_path / "db.sqlite"
    osv = tmp_path / "osv"
    for ident, aliases in (("A", ["X"]), ("B", ["Y"]), ("C", ["X", "Y"]), ("D", ["Y"])):
        osv_record(osv, f"CVE-2099-{ident}", "zlib", "2.0-r0", aliases=aliases)
    assert import_cli(db, osv) == 0
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    got = {v["id"]: set(v["aliases"]) for v in report["vulnerabilities"]}
    assert got == {
        "CVE-2099-A": {"X", "CVE-2099-C", "Y", "CVE-2099-D"},
        "CVE-2099-B": {"Y"},
    }


@pytest.mark.parametrize("name", ["a?mode=rwc&vfs=unix-none", "b#frag", "c%3F", "d\x1b[2J", "e\nf"])
def test_database_names_are_paths_never_uri_parameters(tmp_path: Path, name: str) -> None:
    """open_read builds a file: URI: a name with `?`, `#` or `%` must stay a name (not a
    mode=rwc that would let the read create or write), and the match must find the file."""
    db = tmp_path / f"{name}.sqlite"
    assert import_cli(db, secfixes(tmp_path / "s", "zlib", {"2.0-r0": ["CVE-2099-1"]})) == 0
    before = snapshot(db)
    listing = sorted(os.listdir(tmp_path))
    report = scan_root(apk_root(tmp_path, ("zlib", "1.0-r0", "zlib")), vulndb=db).to_dict()
    assert [v["id"] for v in report["vulnerabilities"]] == ["CVE-2099-1"]
    assert snapshot(db) == before
    assert sorted(os.listdir(tmp_path)) == sorted([*listing, "root"])


def test_a_hostile_database_path_reaches_stderr_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "x\x1b]0;pwned\x07\x1b[2J"
    bad.mkdir()
    root = apk_root(tmp_path, ("zlib", "1.0-r0", "zlib"))
    capsys.readouterr()
    assert cli.main([str(root), "--vulndb", str(bad), "--quiet"]) == cli.EXIT_USAGE
    assert import_cli(bad, tmp_path) == 2
    assert scan_root_main(["vulndb", "status", "--db", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("not a regular file") == 3
    assert "\x1b" not in err and "\x07" not in err
