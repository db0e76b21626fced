"""vulndb.sources on real advisory files (tests/fixtures/advisories, see its PROVENANCE.md), each
expectation read independently from the JSON here, and on hostile inputs made here."""

from __future__ import annotations

import copy
import json
import os
import re
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from cvss import CVSS3

from vulndb.records import Advisory, Distro, Ecosystem, Range, Severity, SourceKind
from vulndb.sources import Format, Limits, SourceError, alpine, debian, detect, errata, osv, read
from vulndb.sources._common import Where

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "advisories"
ALPINE = FIXTURES / "alpine" / "3.20" / "main"
SHARED = Path(os.environ.get("SCANNER_SHARED", "/work/shared"))


def _json(path: Path) -> dict[str, object]:
    with open(path, encoding="utf-8") as stream:
        document = json.load(stream)
    assert isinstance(document, dict)
    return document


def _all(path: Path | str, limits: Limits | None = None) -> list[Advisory]:
    return list(read(path, limits) if limits else read(path))


# --- Alpine secdb -------------------------------------------------------------------------------


ALPINE_FILES = sorted(ALPINE.glob("*.json"))


def test_every_fixture_file_has_its_provenance():
    provenance = (FIXTURES / "PROVENANCE.md").read_text(encoding="utf-8")
    files = [p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "PROVENANCE.md"]
    assert files
    for path in files:
        assert f"`{path.relative_to(FIXTURES).as_posix()}`" in provenance, path


def test_the_alpine_fixture_is_not_empty():
    assert len(ALPINE_FILES) >= 10


@pytest.mark.parametrize("path", ALPINE_FILES, ids=lambda p: p.stem)
def test_alpine_per_package_record(path: Path):
    document = _json(path)
    secfixes = document["secfixes"]
    assert isinstance(secfixes, dict)
    expected = {
        (document["name"], entry.split()[0], version)
        for version, entries in secfixes.items()
        if version != "0"
        for entry in entries
    }
    never = {entry.split()[0] for entry in secfixes.get("0", [])}
    advisories = _all(path)
    got = set()
    for advisory in advisories:
        assert advisory.source is SourceKind.ALPINE_SECDB
        (affected,) = advisory.affected
        assert affected.ecosystem == Ecosystem(Distro.ALPINE, document["distroversion"])
        (rng,) = affected.ranges
        assert rng.introduced == "0" and rng.last_affected is None
        got.add((affected.package, advisory.id, rng.fixed))
    assert got == expected
    assert len(advisories) == sum(len(v) for k, v in secfixes.items() if k != "0")
    # "0": never affected in this release, so never reported (unless fixed under a version too).
    fixed_somewhere = {ident for _, ident, _ in expected}
    assert not (never - fixed_somewhere) & {a.id for a in advisories}


def test_alpine_multi_id_entry_keeps_the_other_ids_as_aliases():
    document = _json(ALPINE / "busybox.json")
    entries = [e for v in document["secfixes"].values() for e in v]  # type: ignore[union-attr]
    several = [e.split() for e in entries if len(e.split()) > 1]
    by_id = {a.id: a for a in _all(ALPINE / "busybox.json")}
    for first, *rest in several:
        assert by_id[first].aliases == tuple(rest)


def test_alpine_secdb_document_equals_the_per_package_records():
    """The secdb shape (secdb.alpinelinux.org/v3.20/main.json) built from the same real records."""
    packages = []
    for path in ALPINE_FILES:
        document = _json(path)
        packages.append({"pkg": {"name": document["name"], "secfixes": document["secfixes"]}})
    secdb = {"apkurl": "x", "archs": ["x86_64"], "reponame": "main", "distroversion": "v3.20"}
    secdb["packages"] = packages  # type: ignore[assignment]
    from_secdb = list(alpine.parse(secdb, Where("main.json")))
    per_package = [a for path in ALPINE_FILES for a in _all(path)]
    assert from_secdb == per_package


def _origins(installed: Path) -> set[str]:
    return {
        line[2:].strip()
        for line in installed.read_text(encoding="utf-8", errors="replace").splitlines()
        if line.startswith("o:")
    }


def test_alpine_fixture_covers_the_apk_fixture_roots_with_secfixes():
    """Every origin of the apk fixture roots that vuln-list has a v3.20 main record for is here
    (the others, alpine-baselayout, alpine-keys..., have no secfixes there; PROVENANCE.md)."""
    installed = sorted((SHARED / "fixtures" / "pkgdb" / "apk").glob("*.installed"))
    if not installed:
        pytest.skip("no shared apk fixtures (SCANNER_SHARED)")
    origins = set().union(*(_origins(path) for path in installed))
    have = {path.stem for path in ALPINE_FILES}
    assert {"openssl", "busybox", "musl", "zlib", "apk-tools"} <= origins & have
    assert len(have - origins) >= 5  # and records of packages no fixture root has


# --- rpm errata ---------------------------------------------------------------------------------


def test_rocky_erratum():
    path = FIXTURES / "rocky" / "RLSA-2025:7459.json"
    document = _json(path)
    (advisory,) = _all(path)
    assert advisory.id == document["id"]
    assert advisory.aliases == tuple(document["cveids"])  # type: ignore[arg-type]
    assert advisory.severity is Severity.MEDIUM  # "Moderate"
    assert advisory.summary == document["title"]
    packages = [p for c in document["collections"] for p in c["packages"]]  # type: ignore[attr-defined]
    expected = {
        (p["name"], f"{p['epoch']}:{p['version']}-{p['release']}", p["arch"]) for p in packages
    }
    got = {(a.package, a.ranges[0].fixed, a.arch) for a in advisory.affected}
    assert got == expected
    assert {a.ecosystem for a in advisory.affected} == {Ecosystem(Distro.ROCKY, "10")}


def test_alma_erratum():
    path = FIXTURES / "alma" / "ALSA-2025:19403.json"
    document = _json(path)
    (advisory,) = _all(path)
    assert advisory.id == document["updateinfo_id"]
    cves = [r["id"] for r in document["references"] if r["type"] == "cve"]  # type: ignore[attr-defined,index]
    assert list(advisory.aliases) == cves and cves
    assert advisory.severity is Severity.HIGH  # "Important"
    packages = document["pkglist"]["packages"]  # type: ignore[index]
    assert len(advisory.affected) == len(packages)
    for affected, package in zip(advisory.affected, packages, strict=True):
        assert affected.package == package["name"] and affected.arch == package["arch"]
        evr = f"{package['epoch']}:{package['version']}-{package['release']}"
        assert affected.ranges == (Range("0", fixed=evr),)
        assert affected.ecosystem == Ecosystem(Distro.ALMA, "10")
    assert advisory.published == "2025-11-03T00:00:00Z"  # 1762128000000 ms


def test_erratum_release_given_overrides_the_el_tag():
    document = _json(FIXTURES / "rocky" / "RLSA-2025:7459.json")
    advisory = errata.parse(document, Where("x"), release="10.0")
    assert {a.ecosystem.release for a in advisory.affected} == {"10.0"}


# --- OSV ----------------------------------------------------------------------------------------


def _expected_ranges(events: list[dict[str, str]]) -> list[tuple[str, str | None]]:
    """Independent reading of an events list: pairs (introduced, fixed)."""
    pairs: list[tuple[str, str | None]] = []
    for event in events:
        if "introduced" in event:
            pairs.append((event["introduced"], None))
        elif "fixed" in event:
            pairs[-1] = (pairs[-1][0], event["fixed"])
    return pairs


@pytest.mark.parametrize("name", ["GO-2022-0476.json", "GHSA-h5c8-rqwp-cp95.json"])
def test_real_osv_record(name: str):
    path = FIXTURES / "osv" / name
    document = _json(path)
    (advisory,) = _all(path)
    assert advisory.id == document["id"]
    assert advisory.aliases == tuple(document["aliases"])  # type: ignore[arg-type]
    assert advisory.modified == document["modified"]
    assert advisory.source is SourceKind.OSV
    raw_affected = document["affected"]
    assert isinstance(raw_affected, list)
    for affected, raw in zip(advisory.affected, raw_affected, strict=True):
        assert affected.package == raw["package"]["name"]
        assert affected.ecosystem == Ecosystem(Distro.OTHER, raw["package"]["ecosystem"])
        expected = [p for r in raw["ranges"] for p in _expected_ranges(r["events"])]
        assert [(r.introduced, r.fixed) for r in affected.ranges] == expected
        assert affected.versions == tuple(raw.get("versions", []))
    assert advisory.cvss_score is None and advisory.severity is Severity.UNKNOWN


def test_real_osv_record_with_a_cvss_vector():
    """GitHub's own copy of GHSA-h5c8-rqwp-cp95: a real CVSS v3.1 vector, scored by the library
    (FIRST's calculator gives 5.4 for it) and rated MEDIUM, as its database_specific says."""
    path = FIXTURES / "osv" / "ghsa" / "GHSA-h5c8-rqwp-cp95.json"
    document = _json(path)
    (advisory,) = _all(path)
    vector = document["severity"][0]["score"]  # type: ignore[index]
    assert advisory.cvss_vector == vector
    assert advisory.cvss_score == float(CVSS3(vector).base_score) == 5.4
    assert advisory.severity is Severity.MEDIUM
    assert document["database_specific"]["severity"] == "MODERATE"  # type: ignore[index]


@pytest.mark.parametrize(
    ("severity", "specific", "expected"),
    [
        ([{"type": "Ubuntu", "score": "high"}], None, Severity.HIGH),
        ([{"type": "Ubuntu", "score": "negligible"}], {"severity": "HIGH"}, Severity.NEGLIGIBLE),
        ([{"type": "CVSS_V3", "score": "not a vector"}], {"severity": "LOW"}, Severity.LOW),
        (None, {"severity": "CRITICAL"}, Severity.CRITICAL),
        (None, {"severity": 7}, Severity.UNKNOWN),
        (None, None, Severity.UNKNOWN),
    ],
)
def test_osv_severity_words(severity: object, specific: object, expected: Severity):
    record: dict[str, object] = {"id": "X-1", "affected": []}
    if severity is not None:
        record["severity"] = severity
    if specific is not None:
        record["database_specific"] = specific
    advisory = osv.parse_record(record, Where("x"))
    assert advisory is not None and advisory.severity is expected and advisory.cvss_score is None


def test_debian_resolved_without_a_version_is_no_fix():
    document = {
        "p": {"CVE-1": {"releases": {"bookworm": {"status": "resolved", "fixed_version": ""}}}}
    }
    assert list(debian.parse(document, Where("x"))) == []


def test_osv_go_record_has_two_intervals():
    (advisory,) = _all(FIXTURES / "osv" / "GO-2022-0476.json")
    assert len(advisory.affected[0].ranges) == 2


DERIVED = FIXTURES / "osv-derived"


@pytest.mark.parametrize(
    ("name", "ecosystem", "score"),
    [
        # Scores as NVD and FIRST's calculator give them for these vectors.
        ("ALPINE-CVE-2024-5535.json", Ecosystem(Distro.ALPINE, "v3.20"), 9.1),
        ("DSA-5514-1.json", Ecosystem(Distro.DEBIAN, "12"), 7.8),
        ("RLSA-2025-7459.json", Ecosystem(Distro.ROCKY, "10"), None),
        ("ALSA-2025-19403.json", Ecosystem(Distro.ALMA, "10"), None),
    ],
)
def test_osv_distro_records(name: str, ecosystem: Ecosystem, score: float | None):
    path = DERIVED / name
    document = _json(path)
    (advisory,) = _all(path)
    assert advisory.affected[0].ecosystem == ecosystem
    ids = list(document.get("aliases", [])) + list(document.get("upstream", []))  # type: ignore[call-overload]
    assert list(advisory.aliases) == ids
    assert advisory.cvss_score == score
    if score is not None:
        vector = document["severity"][0]["score"]  # type: ignore[index]
        assert advisory.cvss_vector == vector
        assert advisory.cvss_score == float(CVSS3(vector).base_score)
        assert advisory.severity is (Severity.CRITICAL if score >= 9 else Severity.HIGH)
    else:
        word = document["database_specific"]["severity"]  # type: ignore[index]
        assert advisory.severity is {"Moderate": Severity.MEDIUM, "Important": Severity.HIGH}[word]


def test_osv_withdrawn_record_is_ignored():
    assert _all(DERIVED / "ALPINE-CVE-2024-5535-withdrawn.json") == []


def test_osv_last_affected_limit_and_git_ranges():
    (advisory,) = _all(DERIVED / "GHSA-h5c8-rqwp-cp95-last-affected.json")
    (affected,) = advisory.affected
    # The GIT range (commits) is no version range: skipped.
    assert affected.ranges == (Range("2.0", last_affected="3.1.2", limit="3.1.3"),)


def test_osv_open_ended_and_closing_without_opening():
    record = {
        "id": "X-1",
        "affected": [
            {
                "package": {"ecosystem": "Debian:12", "name": "p"},
                "ranges": [
                    {"type": "ECOSYSTEM", "events": [{"fixed": "1.0"}, {"introduced": "2.0"}]}
                ],
            }
        ],
    }
    advisory = osv.parse_record(record, Where("x"))
    assert advisory is not None
    assert advisory.affected[0].ranges == (Range("0", fixed="1.0"), Range("2.0"))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Debian:12", Ecosystem(Distro.DEBIAN, "12")),
        ("Ubuntu:22.04:LTS", Ecosystem(Distro.UBUNTU, "22.04")),
        ("Ubuntu:24.10", Ecosystem(Distro.UBUNTU, "24.10")),
        ("Alpine:v3.20", Ecosystem(Distro.ALPINE, "v3.20")),
        ("Rocky Linux:9", Ecosystem(Distro.ROCKY, "9")),
        ("AlmaLinux:8", Ecosystem(Distro.ALMA, "8")),
        (
            "Red Hat:enterprise_linux:9::baseos",
            Ecosystem(Distro.RHEL, "enterprise_linux:9::baseos"),
        ),
        ("openSUSE:Leap 15.5", Ecosystem(Distro.OPENSUSE, "Leap 15.5")),
        (
            "SUSE:Linux Enterprise Server 15 SP5",
            Ecosystem(Distro.SUSE, "Linux Enterprise Server 15 SP5"),
        ),
        ("Mariner:2.0", Ecosystem(Distro.AZURE_LINUX, "2.0")),
        ("Azure Linux:3.0", Ecosystem(Distro.AZURE_LINUX, "3.0")),
        ("PyPI", Ecosystem(Distro.OTHER, "PyPI")),
    ],
)
def test_osv_ecosystems(name: str, expected: Ecosystem):
    assert osv.parse_ecosystem(name) == expected


def _osv_files() -> list[Path]:
    return sorted((FIXTURES / "osv").glob("*.json")) + sorted(DERIVED.glob("*.json"))


def _live(paths: list[Path]) -> int:
    return sum(1 for p in paths if not _json(p).get("withdrawn"))


def test_osv_directory(tmp_path: Path):
    for path in _osv_files():
        (tmp_path / path.name).write_bytes(path.read_bytes())
    (tmp_path / "notes.txt").write_text("not a record")
    advisories = _all(tmp_path)
    assert detect(tmp_path) is Format.DIRECTORY
    assert len(advisories) == _live(_osv_files())


def test_a_directory_of_mixed_formats(tmp_path: Path):
    """vuln-list's trees (alpine/3.20/main/, rocky/...) read as directories too: each file is
    detected on its own."""
    files = [p for p in FIXTURES.rglob("*.json")]
    expected = sorted((a for p in files for a in _all(p)), key=repr)
    assert sorted(_all(FIXTURES), key=repr) == expected
    assert len(expected) > len(files)


def test_a_hostile_key_is_shown_escaped(tmp_path: Path):
    document = _json(ALPINE / "zlib.json")
    document["secfixes"] = {"1.0-r0\n\u202e": "CVE-1"}
    path = _write(tmp_path, document)
    with pytest.raises(SourceError) as caught:
        _all(path)
    message = str(caught.value)
    assert "\n" not in message and "\u202e" not in message and "1.0-r0\\n\\u202e" in message


def test_osv_zip_equals_the_directory(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        for path in _osv_files():
            out.write(path, path.name)
    assert detect(archive) is Format.OSV_ZIP
    in_zip = sorted(_all(archive), key=repr)
    one_by_one = sorted((a for p in _osv_files() for a in _all(p)), key=repr)
    assert in_zip == one_by_one and len(in_zip) == _live(_osv_files())


# --- Debian security tracker --------------------------------------------------------------------


def test_debian_tracker_excerpt():
    path = FIXTURES / "debian-derived" / "tracker-excerpt.json"
    document = _json(path)
    expected = set()
    for source, cves in document.items():
        for cve, entry in cves.items():  # type: ignore[attr-defined]
            for codename, rel in entry["releases"].items():
                if rel["status"] == "not-affected":
                    continue
                if rel["status"] == "resolved" and rel.get("fixed_version") in (None, "0"):
                    continue
                fixed = rel.get("fixed_version") if rel["status"] == "resolved" else None
                number = debian.CODENAMES.get(codename, codename)
                expected.add((source, cve, number, fixed))
    got = {
        (a.package, adv.id, a.ecosystem.release, a.ranges[0].fixed)
        for adv in _all(path)
        for a in adv.affected
    }
    assert got == expected
    assert ("zlib", "CVE-2022-37434", "10", None) not in got  # "0": never affected in buster
    by_id = {a.id: a for a in _all(path)}
    assert by_id["CVE-2010-4756"].severity is Severity.NEGLIGIBLE  # urgency unimportant
    assert by_id["CVE-2023-0286"].severity is Severity.HIGH
    assert all(a.source is SourceKind.DEBIAN_TRACKER for a in by_id.values())


# --- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("alpine/3.20/main/openssl.json", Format.ALPINE_SECDB),
        ("rocky/RLSA-2025:7459.json", Format.RPM_ERRATA),
        ("alma/ALSA-2025:19403.json", Format.RPM_ERRATA),
        ("osv/GO-2022-0476.json", Format.OSV),
        ("osv-derived/DSA-5514-1.json", Format.OSV),
        ("debian-derived/tracker-excerpt.json", Format.DEBIAN_TRACKER),
    ],
)
def test_detect(relative: str, expected: Format):
    assert detect(FIXTURES / relative) is expected


@pytest.mark.parametrize(
    "content",
    [b'{"hello": "world"}', b"[1, 2]", b"not json", b"", b'{"a": {"b": 1}}', b"\xff\xfe"],
)
def test_detect_refuses_what_it_does_not_know(tmp_path: Path, content: bytes):
    path = tmp_path / "thing.json"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=re.escape(str(path))):
        detect(path)


# --- hostile input ------------------------------------------------------------------------------


def _write(tmp_path: Path, document: object, name: str = "doc.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def _osv_real() -> dict[str, object]:
    return _json(DERIVED / "DSA-5514-1.json")


def _set(path: tuple[str | int, ...], value: object) -> Callable[[dict[str, object]], None]:
    def apply(document: dict[str, object]) -> None:
        node: object = document
        for key in path[:-1]:
            node = node[key]  # type: ignore[index]
        node[path[-1]] = value  # type: ignore[index]

    return apply


WRONG_OSV = [
    (("id",), 5, "id"),
    (("id",), "", "id"),
    (("aliases",), "CVE-1", "aliases"),
    (("aliases",), [1], "aliases[0]"),
    (("summary",), ["x"], "summary"),
    (("affected",), {}, "affected"),
    (("affected", 0, "package"), None, "affected[0].package"),
    (("affected", 0, "package", "name"), None, "affected[0].package.name"),
    (("affected", 0, "ranges"), "x", "affected[0].ranges"),
    (("affected", 0, "ranges", 0, "events"), {}, "affected[0].ranges[0].events"),
    (("affected", 0, "ranges", 0, "events", 0), {"introduced": 1}, "events[0].introduced"),
    (("affected", 0, "ranges", 0, "events", 0), {"a": "1", "b": "2"}, "events[0]"),
    (("affected", 0, "ranges", 0, "events", 0), {"bogus": "1"}, "events[0]"),
    (("severity",), [{"type": 3, "score": "x"}], "severity[0].type"),
    (("withdrawn",), 7, "withdrawn"),
]


@pytest.mark.parametrize(("path", "value", "field"), WRONG_OSV, ids=str)
def test_wrong_types_in_osv(tmp_path: Path, path: tuple[str | int, ...], value: object, field: str):
    document = copy.deepcopy(_osv_real())
    _set(path, value)(document)
    target = _write(tmp_path, document)
    with pytest.raises(SourceError) as caught:
        _all(target)
    assert str(target) in str(caught.value) and field in str(caught.value)


WRONG_OTHERS = [
    ("alpine/3.20/main/zlib.json", ("secfixes",), ["x"], "secfixes"),
    ("alpine/3.20/main/zlib.json", ("secfixes", "1.2.11-r4"), "CVE-1", "secfixes.1.2.11-r4"),
    ("alpine/3.20/main/zlib.json", ("distroversion",), 3.2, "distroversion"),
    ("alpine/3.20/main/zlib.json", ("distroversion",), "3.20", "distroversion"),
    ("alpine/3.20/main/zlib.json", ("name",), None, "name"),
    ("rocky/RLSA-2025:7459.json", ("cveids",), "CVE-1", "cveids"),
    ("rocky/RLSA-2025:7459.json", ("collections", 0, "packages", 0, "epoch"), "x", "epoch"),
    ("rocky/RLSA-2025:7459.json", ("collections", 0, "packages", 0, "release"), "1", "release"),
    ("rocky/RLSA-2025:7459.json", ("id",), "XYZ-1", "id"),
    ("alma/ALSA-2025:19403.json", ("issued_date", "$date"), "soon", "issued_date.$date"),
    ("alma/ALSA-2025:19403.json", ("pkglist",), [], "pkglist"),
    ("debian-derived/tracker-excerpt.json", ("zlib", "CVE-2022-37434", "releases"), [], "releases"),
    (
        "debian-derived/tracker-excerpt.json",
        ("zlib", "CVE-2022-37434", "releases", "bullseye", "status"),
        "maybe",
        "bullseye.status",
    ),
    (
        "debian-derived/tracker-excerpt.json",
        ("zlib", "CVE-2022-37434", "releases", "bullseye", "fixed_version"),
        1,
        "fixed_version",
    ),
]


@pytest.mark.parametrize(("relative", "path", "value", "field"), WRONG_OTHERS, ids=str)
def test_wrong_types_in_other_formats(
    tmp_path: Path, relative: str, path: tuple[str | int, ...], value: object, field: str
):
    document = _json(FIXTURES / relative)
    _set(path, value)(document)
    target = _write(tmp_path, document)
    with pytest.raises(SourceError) as caught:
        _all(target)
    assert str(target) in str(caught.value) and field in str(caught.value)


def test_deep_nesting_is_refused(tmp_path: Path):
    path = tmp_path / "deep.json"
    path.write_text('{"id": "X", "affected": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(SourceError, match="nested deeper"):
        _all(path)


def test_moderate_nesting_past_the_depth_bound_is_refused(tmp_path: Path):
    document: object = "x"
    for _ in range(40):
        document = {"a": document}
    path = _write(tmp_path, {"id": "X", "affected": [], "database_specific": document})
    with pytest.raises(SourceError, match="nested deeper"):
        _all(path)


def test_duplicate_keys_are_refused(tmp_path: Path):
    path = tmp_path / "dup.json"
    path.write_text('{"id": "A", "id": "B", "affected": []}')
    with pytest.raises(SourceError, match="twice"):
        _all(path)


def test_huge_strings_are_refused(tmp_path: Path):
    document = _osv_real()
    document["summary"] = "s" * 5000
    path = _write(tmp_path, document)
    with pytest.raises(SourceError, match="summary"):
        _all(path, Limits(max_string=1000))


def test_a_file_over_the_size_bound_is_refused(tmp_path: Path):
    path = _write(tmp_path, _osv_real())
    with pytest.raises(SourceError, match="over the limit"):
        _all(path, Limits(max_file_bytes=100))


def test_too_many_values_are_refused(tmp_path: Path):
    path = tmp_path / "many.json"
    path.write_text('{"id": "X", "affected": [' + ",".join(["[]"] * 5000) + "]}")
    with pytest.raises(SourceError, match="JSON values"):
        _all(path, Limits(max_nodes=1000))


def test_invalid_utf8_is_refused(tmp_path: Path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'{"id": "\xff", "affected": []}')
    with pytest.raises(SourceError, match="UTF-8"):
        _all(path)


def test_a_fifo_is_refused_without_blocking(tmp_path: Path):
    path = tmp_path / "fifo.json"
    os.mkfifo(path)
    with pytest.raises(SourceError):
        _all(path)


def test_a_missing_file_is_a_source_error(tmp_path: Path):
    with pytest.raises(SourceError, match="cannot read"):
        _all(tmp_path / "absent.json")


def test_zip_bomb_is_refused_before_inflating(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("bomb.json", b" " * (20 << 20))  # 20 MiB of spaces: ~1000x
    with pytest.raises(SourceError, match="compressed more than"):
        _all(archive)


def test_zip_member_over_the_size_bound_is_refused(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        out.writestr("big.json", json.dumps(_osv_real()) + " " * 5000)
    with pytest.raises(SourceError, match="big.json"):
        _all(archive, Limits(max_member_bytes=4096))


def test_zip_total_is_bounded(tmp_path: Path):
    archive = tmp_path / "all.zip"
    text = json.dumps(_osv_real())
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as out:
        for i in range(10):
            out.writestr(f"r{i}.json", text)
    with pytest.raises(SourceError, match="uncompressed"):
        _all(archive, Limits(max_total_bytes=len(text) * 5))


def test_zip_archive_size_is_bounded(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("r.json", json.dumps(_osv_real()))
    with pytest.raises(SourceError, match="over the limit"):
        _all(archive, Limits(max_zip_bytes=100))


def test_zip_member_count_is_bounded(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        for i in range(20):
            out.writestr(f"r{i}.txt", "")
    with pytest.raises(SourceError, match="members"):
        _all(archive, Limits(max_members=10))


def test_zip_member_names_are_never_paths(tmp_path: Path):
    """Traversal and absolute names are only labels: the records parse, nothing is written."""
    work = tmp_path / "work"
    work.mkdir()
    archive = work / "all.zip"
    text = json.dumps(_osv_real())
    names = ["../../evil.json", "/tmp/abs-evil.json", "a/../../b.json", "nul\u202e.json"]
    with zipfile.ZipFile(archive, "w") as out:
        for name in names:
            out.writestr(zipfile.ZipInfo(name), text)
    before = sorted(p for p in tmp_path.rglob("*"))
    advisories = _all(archive)
    assert len(advisories) == len(names)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert not Path("/tmp/abs-evil.json").exists()


def test_zip_member_errors_name_the_member_escaped(tmp_path: Path):
    archive = tmp_path / "all.zip"
    with zipfile.ZipFile(archive, "w") as out:
        out.writestr("../x\u202e\n.json", '{"id": 5, "affected": []}')
    with pytest.raises(SourceError) as caught:
        _all(archive)
    message = str(caught.value)
    assert "\n" not in message and "\u202e" not in message and "\\u202e" in message
    assert "all.zip!../x" in message and "id" in message


def test_corrupt_zip_is_a_source_error(tmp_path: Path):
    archive = tmp_path / "all.zip"
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("r.json", json.dumps(_osv_real()) * 3)
    data = bytearray(good.read_bytes())
    data[40:60] = b"\x00" * 20  # inside the compressed member
    archive.write_bytes(bytes(data))
    with pytest.raises(SourceError):
        _all(archive)


def test_directory_does_not_follow_symlinks(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    _write(outside, _osv_real(), "secret.json")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "link.json").symlink_to(outside / "secret.json")
    (tree / "dir").symlink_to(outside)
    assert _all(tree) == []


def test_directory_file_count_is_bounded(tmp_path: Path):
    for i in range(5):
        _write(tmp_path, _osv_real(), f"r{i}.json")
    with pytest.raises(SourceError, match="more than 3"):
        _all(tmp_path, Limits(max_files=3))


def test_debian_tracker_top_level_wrong_shape(tmp_path: Path):
    path = _write(tmp_path, {"glibc": {"CVE-1": {"releases": {"bookworm": "resolved"}}}})
    assert detect(path) is Format.DEBIAN_TRACKER
    with pytest.raises(SourceError, match=r"glibc\.CVE-1\.releases\.bookworm"):
        _all(path)
