"""A report's `vulnerabilities` through the console, on both engines: stored with the scan,
counted on the Deployed listing, listed worst first on the image's Vulnerabilities tab; a
report without them is "unknown", never "none"."""

from __future__ import annotations

import copy
import html
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_fixtures import ConsoleServer
from console_reports import make_root, scan_report

from console.accounts import create_token
from console.kinds import Scope
from console.report_schema import ReportError, parse_report

# Shaped as scan-root writes them (docs/report.md). The records are display fixtures for the
# store and the pages; the matcher's own tests use real advisory data.
VULNERABILITIES = [
    {
        "id": "CVE-2023-5678",
        "aliases": ["DSA-5585-1"],
        "package": {
            "name": "libssl3",
            "version": "3.0.11-1~deb12u1",
            "manager": "dpkg",
            "source_name": "openssl",
        },
        "fixed_version": "3.0.13-1~deb12u1",
        "severity": "medium",
        "cvss": 5.3,
        "summary": "Excessive time spent in DH check / generation with large Q parameter value",
        "source": {"name": "debian-security-tracker", "date": "2026-11-30"},
    },
    {
        "id": "CVE-2024-0001",
        "aliases": [],
        "package": {"name": "zlib1g", "version": "1:1.2.13.dfsg-1", "manager": "dpkg"},
        "fixed_version": None,
        "severity": "unknown",
        "cvss": None,
        "summary": "<script>alert(1)</script> & more",
        "source": {"name": "osv"},
    },
    {
        "id": "CVE-2024-0002",
        "aliases": [],
        "package": {
            "name": "libc6",
            "version": "2.36-9",
            "manager": "dpkg",
            "source_name": "glibc",
        },
        "fixed_version": "2.36-9+deb12u4",
        "severity": "critical",
        "cvss": 9.8,
        "summary": None,
        "source": {"name": "osv", "date": "2026-11-30"},
    },
]


@pytest.fixture(scope="module")
def base_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return scan_report(make_root(tmp_path_factory.mktemp("root"), miner=False))


def posted(server: ConsoleServer, report: dict[str, Any], image: str) -> dict[str, Any]:
    """`report` for a container of `image`, as a new scan; the console's answer checked."""
    document = copy.deepcopy(report)
    document["scan_id"] = str(uuid.uuid4())
    document["target"]["container"] = {"name": "app", "docker_id": uuid.uuid4().hex, "image": image}
    answer = server.post(json.dumps(document).encode())
    assert answer.status_code == 201, answer.text
    return document


def read(server: ConsoleServer, path: str) -> httpx.Response:
    token = create_token(server.db.engine, f"r-{uuid.uuid4().hex[:8]}", [Scope.READ])
    return httpx.get(server.base_url + path, headers={"Authorization": f"Bearer {token}"})


def image_id(server: ConsoleServer, name: str) -> int:
    images = read(server, "/api/v1/images?per_page=100").json()["images"]
    return next(image["id"] for image in images if image["name"] == name)


def test_vulnerabilities_are_counted_listed_and_shown_worst_first(
    console_server: ConsoleServer, base_report: dict[str, Any]
) -> None:
    report = {**base_report, "vulnerabilities": VULNERABILITIES}
    posted(console_server, report, "registry.example/vulnerable:1")
    number = image_id(console_server, "registry.example/vulnerable:1")
    listing = read(console_server, "/api/v1/images?per_page=100").json()["images"]
    counts = next(image for image in listing if image["id"] == number)["vulnerabilities"]
    assert counts == {"critical": 1, "high": 0, "medium": 1, "low": 0, "unknown": 1}
    details = read(console_server, f"/api/v1/images/{number}").json()
    assert [v["id"] for v in details["vulnerabilities"]] == [
        "CVE-2024-0002",
        "CVE-2023-5678",
        "CVE-2024-0001",
    ]
    assert details["vulnerabilities"][1] == VULNERABILITIES[0]
    assert details["vulnerabilities_total"] == 3
    page = read(console_server, f"/monitor/compliance/images/{number}?tab=vulnerabilities").text
    assert 'id="vulnerability-list"' in page and "no-vulnerability-data" not in page
    assert "<script>alert(1)</script>" not in page
    assert html.escape("<script>alert(1)</script> & more", quote=False) in page
    assert "1 critical, 1 medium, 1 unknown" in page
    deployed = read(console_server, "/monitor/compliance/images/deployed").text
    row = deployed.split(f'data-image-id="{number}"', 1)[1].split("</tr>", 1)[0]
    assert "1 critical, 1 medium, 1 unknown" in row


def test_a_scan_without_an_advisory_database_is_unknown_and_an_empty_list_is_none(
    console_server: ConsoleServer, base_report: dict[str, Any]
) -> None:
    posted(console_server, base_report, "registry.example/unmatched:1")
    posted(console_server, {**base_report, "vulnerabilities": []}, "registry.example/clean:1")
    unmatched = image_id(console_server, "registry.example/unmatched:1")
    clean = image_id(console_server, "registry.example/clean:1")
    assert read(console_server, f"/api/v1/images/{unmatched}").json()["vulnerabilities"] is None
    assert read(console_server, f"/api/v1/images/{clean}").json()["vulnerabilities"] == []
    page = read(console_server, f"/monitor/compliance/images/{unmatched}?tab=vulnerabilities").text
    assert 'id="no-vulnerability-data"' in page
    deployed = read(console_server, "/monitor/compliance/images/deployed").text
    cells = {
        number: deployed.split(f'data-image-id="{number}"', 1)[1].split("</tr>", 1)[0]
        for number in (unmatched, clean)
    }
    assert ">unknown<" in cells[unmatched] and ">none<" in cells[clean]


def test_a_replay_stores_its_vulnerabilities_once(
    console_server: ConsoleServer, base_report: dict[str, Any]
) -> None:
    document = posted(
        console_server,
        {**base_report, "vulnerabilities": VULNERABILITIES},
        "registry.example/replayed:1",
    )
    again = console_server.post(json.dumps(document).encode())
    assert again.status_code == 200 and again.json()["stored"] is False
    number = image_id(console_server, "registry.example/replayed:1")
    assert read(console_server, f"/api/v1/images/{number}").json()["vulnerabilities_total"] == 3


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda v: v.update(severity="negligible"), "vulnerabilities[0].severity"),
        (lambda v: v.update(cvss=11), "vulnerabilities[0].cvss"),
        (lambda v: v.update(cvss=True), "vulnerabilities[0].cvss"),
        (lambda v: v.update(cvss="9.8"), "vulnerabilities[0].cvss"),
        (lambda v: v.update(id="C" * 129), "vulnerabilities[0].id"),
        (lambda v: v.update(aliases=["A"] * 33), "vulnerabilities[0].aliases"),
        (lambda v: v.update(aliases="CVE-1"), "vulnerabilities[0].aliases"),
        (lambda v: v.pop("package"), "vulnerabilities[0].package"),
        (lambda v: v["package"].update(version=7), "vulnerabilities[0].package.version"),
        (lambda v: v.update(summary="s" * 5000), "vulnerabilities[0].summary"),
        (lambda v: v.update(source="osv"), "vulnerabilities[0].source"),
    ],
)
def test_malformed_vulnerabilities_are_refused_by_field(
    console_server: ConsoleServer, base_report: dict[str, Any], change: Any, field: str
) -> None:
    entry = copy.deepcopy(VULNERABILITIES[0])
    change(entry)
    document = {
        **copy.deepcopy(base_report),
        "scan_id": str(uuid.uuid4()),
        "vulnerabilities": [entry],
    }
    answer = console_server.post(json.dumps(document).encode())
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field


def test_too_many_vulnerabilities_are_refused(base_report: dict[str, Any]) -> None:
    # Past the HTTP body bound too (4 MiB in these tests), so the parser is asked directly.
    document = {**copy.deepcopy(base_report), "vulnerabilities": [VULNERABILITIES[2]] * 50_001}
    with pytest.raises(ReportError) as refused:
        parse_report(document)
    assert refused.value.field == "vulnerabilities"
    document["vulnerabilities"] = document["vulnerabilities"][:50_000]
    assert len(parse_report(document).vulnerabilities or ()) == 50_000


def test_the_report_schema_documents_the_field() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "report.md").read_text()
    assert "`vulnerabilities`" in text
