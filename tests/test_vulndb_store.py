"""The advisory store and the commands around it: incremental imports, status, a database
someone else wrote, and --vulndb's report (JSON, table, SARIF, --fail-on, exit codes)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
from pathlib import Path

import jsonschema
import pytest
from jsonschema.validators import validator_for

from console.entry import main as scan_root_main
from console.report_schema import parse_report
from scanner import cli
from vulndb.records import Distro, Ecosystem
from vulndb.sources import read
from vulndb.store import StoreError, VulnDB

ADVISORIES = Path(__file__).resolve().parent / "fixtures" / "advisories"
TRACKER = ADVISORIES / "debian-derived" / "tracker-excerpt.json"
ALPINE_320 = ADVISORIES / "alpine" / "3.20" / "main"
SHARED = Path(os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parents[2] / "shared"))


def import_cli(db: Path, *sources: Path | str) -> int:
    return scan_root_main(["vulndb", "import", "--db", str(db), *map(str, sources)])


# --- importing -----------------------------------------------------------------------------


def test_import_then_reimport_is_incremental(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite"
    assert import_cli(db, ALPINE_320, TRACKER) == 0
    first = capsys.readouterr().out
    assert re.search(r"main: directory, 257 advisories: (\d+) added, 0 changed, 0 unchanged", first)
    with VulnDB.open_read(db) as store:
        ecosystems = store.ecosystems()
    assert ecosystems[Ecosystem(Distro.ALPINE, "v3.20")] > 200
    assert ecosystems[Ecosystem(Distro.DEBIAN, "12")] == 4
    # the same files again: nothing changes
    assert import_cli(db, ALPINE_320) == 0
    assert re.search(r": 0 added, 0 changed, \d+ unchanged", capsys.readouterr().out)
    # a newer copy of one file (one fix moved, one CVE added): exactly those change
    newer = tmp_path / "newer"
    newer.mkdir()
    document = json.loads((ALPINE_320 / "zlib.json").read_text())
    secfixes = document["secfixes"]
    version = next(v for v in secfixes if v != "0")
    secfixes[version + "1"] = secfixes.pop(version)
    secfixes["9.9.9-r0"] = ["CVE-2099-0001"]
    (newer / "zlib.json").write_text(json.dumps(document))
    assert import_cli(db, newer) == 0
    out = capsys.readouterr().out
    changed = len(secfixes[version + "1"])
    assert f": 1 added, {changed} changed, " in out, out


def test_a_bad_source_stores_nothing_of_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite"
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copyfile(ALPINE_320 / "zlib.json", broken / "a.json")
    (broken / "b.json").write_text('{"distroversion": "v3.20", "packages": 7}')
    assert import_cli(db, broken, TRACKER) == 2
    captured = capsys.readouterr()
    assert "nothing imported from it" in captured.err
    with VulnDB.open_read(db) as store:
        assert set(store.ecosystems()) == {
            Ecosystem(Distro.DEBIAN, "12"),
            Ecosystem(Distro.DEBIAN, "11"),
            Ecosystem(Distro.DEBIAN, "sid"),
        }


def test_status_lists_sources_ecosystems_and_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "db.sqlite"
    assert import_cli(db, ALPINE_320, ADVISORIES / "rocky") == 0
    capsys.readouterr()
    assert scan_root_main(["vulndb", "status", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "(today)" in out and "ecosystem Alpine v3.20:" in out
    assert "ecosystem Rocky Linux 10: 2 entries" in out
    assert scan_root_main(["vulndb", "status", "--db", str(db), "--format", "json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {s["kind"] for s in document["sources"]} == {"alpine-secdb", "rpm-errata"}
    assert {"distro": "rocky", "release": "10", "entries": 2} in document["ecosystems"]


def test_the_default_database_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCAN_ROOT_VULNDB", str(tmp_path / "env.sqlite"))
    assert scan_root_main(["vulndb", "import", str(TRACKER)]) == 0
    assert (tmp_path / "env.sqlite").is_file()
    monkeypatch.delenv("SCAN_ROOT_VULNDB")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert scan_root_main(["vulndb", "import", str(TRACKER)]) == 0
    assert (tmp_path / "cache/scan-root/vulndb.sqlite").is_file()


# --- a database someone else wrote --------------------------------------------------------


def test_what_is_not_our_database_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no advisory database here"):
        VulnDB.open_read(tmp_path / "absent.sqlite")
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(StoreError, match="not a regular file"):
        VulnDB.open_read(tmp_path / "fifo")
    with pytest.raises(StoreError, match="not a regular file"):
        VulnDB.open_write(tmp_path / "fifo")
    (tmp_path / "garbage").write_bytes(b"\x00garbage" * 500)
    with pytest.raises(StoreError, match="not a usable SQLite"):
        VulnDB.open_read(tmp_path / "garbage")
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).executescript("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
    with pytest.raises(StoreError, match="not a scan-root advisory database"):
        VulnDB.open_read(other)
    with pytest.raises(StoreError, match="not a scan-root advisory database"):
        VulnDB.open_write(other)  # never adopted and written into


def test_a_tampered_database_is_an_error_not_a_crash(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with VulnDB.open_write(db) as store:
        store.import_advisories(read(TRACKER), label="tracker")
    tampering = [
        "UPDATE units SET ranges = '[[1, 2, 3]]'",
        "UPDATE units SET ranges = 'not json'",
        "UPDATE units SET aliases = '[' || replace(hex(zeroblob(3000)), '00', '0,') || '0]'",
        "UPDATE units SET severity = 'x'",
        "UPDATE units SET cvss_score = 99",
        "UPDATE units SET kind = 'evil'",
        "UPDATE units SET ranges = '" + "[" * 5000 + "'",
        "UPDATE meta SET value = '99' WHERE key = 'schema'",
    ]
    for statement in tampering:
        copy = tmp_path / "copy.sqlite"
        shutil.copyfile(db, copy)
        with sqlite3.connect(copy) as connection:
            connection.execute(statement)
        with pytest.raises(StoreError):
            with VulnDB.open_read(copy) as store:
                list(store.advisories_for(Ecosystem(Distro.DEBIAN, "12"), ["glibc", "zlib"]))


def test_a_database_with_a_trigger_changes_nothing_when_read(tmp_path: Path) -> None:
    db = tmp_path / "db.sqlite"
    with VulnDB.open_write(db) as store:
        store.import_advisories(read(TRACKER), label="tracker")
    with sqlite3.connect(db) as connection:
        connection.execute("CREATE TRIGGER t AFTER UPDATE ON meta BEGIN DELETE FROM units; END")
    before = db.read_bytes()
    with VulnDB.open_read(db) as store:
        assert list(store.advisories_for(Ecosystem(Distro.DEBIAN, "12"), ["glibc"]))
    assert db.read_bytes() == before  # opened read-only, query-only


# --- the scan's report --------------------------------------------------------------------


def alpine_root(tmp_path: Path, *packages: tuple[str, str, str]) -> Path:
    """A small apk root of Alpine 3.20 (its installed DB written here: name, version, origin)."""
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "etc/alpine-release").write_text("3.20.3\n")
    stanzas = "".join(f"P:{n}\nV:{v}\nA:x86_64\no:{o}\n\n" for n, v, o in packages)
    (root / "lib/apk/db/installed").write_text(stanzas)
    return root


@pytest.fixture
def alpine(tmp_path: Path) -> tuple[Path, Path]:
    """openssl 3.3.0-r0 (before several real v3.20 secfixes) and zlib 1.3.1-r1 (after all)."""
    root = alpine_root(
        tmp_path,
        ("libcrypto3", "3.3.0-r0", "openssl"),
        ("libssl3", "3.3.0-r0", "openssl"),
        ("zlib", "1.3.1-r1", "zlib"),
    )
    db = tmp_path / "db.sqlite"
    assert import_cli(db, ALPINE_320, ADVISORIES / "osv-derived") == 0
    return root, db


def test_json_report_entries(alpine: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, db = alpine
    capsys.readouterr()
    code = cli.main([str(root), "--vulndb", str(db), "--format", "json", "--checks", "448"])
    report = json.loads(capsys.readouterr().out)
    parse_report(report)
    entries = report["vulnerabilities"]
    assert {e["package"]["name"] for e in entries} == {"libcrypto3", "libssl3"}
    assert all(e["package"]["source_name"] == "openssl" for e in entries)
    # CVE-2024-5535: the secdb's and the OSV record's (ALPINE-CVE-2024-5535), one entry each
    five = [e for e in entries if e["id"] == "CVE-2024-5535"]
    assert len(five) == 2 and all("ALPINE-CVE-2024-5535" in e["aliases"] for e in five)
    assert all(e["fixed_version"] == "3.3.1-r1" and e["cvss"] == 9.1 for e in five)
    assert all(e["severity"] == "critical" for e in five)
    assert not [e for e in entries if e["id"] == "ALPINE-CVE-2024-5535"]
    assert all(e["source"]["name"].startswith(("alpine-secdb:", "osv:")) for e in entries)
    # vulnerabilities alone do not fail a scan without --fail-on; 448 found nothing to verify
    assert code in (cli.EXIT_CLEAN, cli.EXIT_INCOMPLETE)


def test_fail_on_gates_on_vulnerabilities(alpine: tuple[Path, Path]) -> None:
    root, db = alpine
    base = [str(root), "--vulndb", str(db), "--checks", "448", "--quiet", "--format", "json"]
    base.append("--output")
    out = str(root.parent / "out.json")
    assert cli.main([*base, out, "--fail-on", "critical"]) == cli.EXIT_FINDINGS
    report = json.loads(Path(out).read_text())
    assert any(e["severity"] == "critical" for e in report["vulnerabilities"])
    # the same root with openssl fixed: nothing critical is left
    fixed = alpine_root(root.parent / "fixed", ("libssl3", "3.3.99-r0", "openssl"))
    assert cli.main([str(fixed), "--vulndb", str(db), "--checks", "448", "--quiet",
                     "--format", "json", "--output", out, "--fail-on", "critical"]) != cli.EXIT_FINDINGS  # fmt: skip
    assert json.loads(Path(out).read_text())["vulnerabilities"] == []


def test_table_and_sarif(alpine: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    root, db = alpine
    capsys.readouterr()
    cli.main([str(root), "--vulndb", str(db), "--checks", "448", "--quiet"])
    table = capsys.readouterr().out
    assert re.search(r"Vulnerabilities: \d+", table)
    assert re.search(
        r"critical CVE-2024-5535\s+openssl \(apk lib(ssl|crypto)3 3.3.0-r0\): fixed in 3.3.1-r1 "
        r"cvss 9.1",
        table,
    ), table
    cli.main([str(root), "--vulndb", str(db), "--checks", "448", "--format", "sarif"])
    sarif = json.loads(capsys.readouterr().out)
    run = sarif["runs"][0]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert rules["CVE-2024-5535"]["properties"]["security-severity"] == "9.1"
    results = [r for r in run["results"] if r["ruleId"] == "CVE-2024-5535"]
    assert len(results) == 2 and all(r["level"] == "error" for r in results)
    schema_path = SHARED / "schemas" / "sarif-schema-2.1.0.json"
    if not schema_path.is_file():
        pytest.skip(f"../shared is absent ({schema_path} not found)")
    schema = json.loads(schema_path.read_text())
    validator_for(schema)(schema, format_checker=jsonschema.FormatChecker()).validate(sarif)


def test_an_unusable_database_fails_before_the_scan(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = alpine_root(tmp_path, ("zlib", "1.3.1-r1", "zlib"))
    code = cli.main([str(root), "--vulndb", str(tmp_path / "absent.sqlite"), "--quiet"])
    assert code == cli.EXIT_USAGE
    assert "no advisory database here" in capsys.readouterr().err


def test_a_package_version_its_manager_refuses_is_a_problem(alpine: tuple[Path, Path]) -> None:
    _, db = alpine
    root = alpine_root(alpine[0].parent / "bad", ("libssl3", "3..3-r0\x1b[2J", "openssl"))
    from scanner import scan_root

    report = scan_root(root, checks=["448"], vulndb=db).to_dict()
    problems = [p for p in report["problems"] if p["kind"] == "vulnerabilities"]
    assert problems and "not checked against" in problems[0]["message"]
    assert report["complete"] is False


def test_an_image_is_matched_too(alpine: tuple[Path, Path], tmp_path: Path) -> None:
    """`scan-root image --vulndb`: the layers are applied to a scratch root, matched there."""
    import imagebuilder

    root, db = alpine
    layer = imagebuilder.tar_tree(root, tmp_path / "layer.tar")
    archive = tmp_path / "image.tar"
    imagebuilder.write_oci_archive(archive, [layer], imagebuilder.image_config())
    out = tmp_path / "report.json"
    code = cli.main(["image", str(archive), "--vulndb", str(db), "--checks", "448",
                     "--format", "json", "--output", str(out), "--quiet"])  # fmt: skip
    report = json.loads(out.read_text())
    assert code in (cli.EXIT_CLEAN, cli.EXIT_INCOMPLETE), report["problems"]
    assert report["target"]["kind"] == "image"
    assert {e["package"]["name"] for e in report["vulnerabilities"]} == {"libcrypto3", "libssl3"}
