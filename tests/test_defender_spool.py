"""The defender's spool (bounded, atomic, losses said once) and its report cap."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from defender.capping import cap_report
from defender.spool import CORRUPT, LOSSES, Spool
from scanner import Finding, FindingKind, Problem, ProblemKind, Report, Severity


def report_body(scan_id: str, size: int) -> bytes:
    body = json.dumps({"scan_id": scan_id, "pad": "x" * size}).encode()
    return body


def put(spool: Spool, size: int = 1500) -> str:
    scan_id = str(uuid.uuid4())
    spool.put(scan_id, report_body(scan_id, size))
    return scan_id


def test_reports_come_back_oldest_first_and_leave_when_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    ids = [put(spool) for _ in range(5)]
    entries = spool.pending()
    assert [entry.scan_id for entry in entries] == ids
    assert json.loads(spool.read(entries[0]) or b"")["scan_id"] == ids[0]
    spool.remove(entries[0])
    assert [entry.scan_id for entry in Spool(tmp_path, 1 << 20).pending()] == ids[1:]
    assert all(
        stat.st_mode & 0o777 == 0o600 for stat in map(os.stat, (e.path for e in entries[1:]))
    )


def test_a_full_spool_drops_the_oldest_and_says_so_once(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 4096)
    first, second = put(spool), put(spool)
    third = put(spool)  # 3 x ~1.5 KiB > 4 KiB: the oldest goes
    assert [entry.scan_id for entry in spool.pending()] == [second, third]
    said, mark = spool.take_losses()
    assert len(said) == 1 and first in said[0] and "dropped" in said[0]
    # A drop after the mark (making room for the report that says the first) stays for later.
    fourth = put(spool)
    spool.commit_losses(mark)
    said_next, _ = Spool(tmp_path, 4096).take_losses()  # kept on disk across restarts
    assert len(said_next) == 1 and second in said_next[0] and first not in said_next[0]
    assert fourth in [entry.scan_id for entry in spool.pending()]


def test_a_report_larger_than_the_spool_is_refused_and_said(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 4096)
    scan_id = str(uuid.uuid4())
    with pytest.raises(ValueError, match="larger than the spool"):
        spool.put(scan_id, report_body(scan_id, 10_000))
    said, _ = spool.take_losses()
    assert scan_id in said[0]
    with pytest.raises(ValueError, match="not a scan id"):
        spool.put("../../etc/passwd", b"{}")


def test_corrupt_and_foreign_files_are_set_aside_when_the_spool_opens(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 1 << 20)
    good = put(spool)
    bad_id = str(uuid.uuid4())
    (tmp_path / f"{'1' * 20}-{bad_id}.json").write_bytes(b'{"scan_id": "' + bad_id.encode())
    (tmp_path / f"{'2' * 20}-{uuid.uuid4()}.json").write_bytes(report_body(str(uuid.uuid4()), 10))
    os.mkfifo(tmp_path / "a-fifo")
    (tmp_path / ".half.json.ab12cd34.tmp").write_bytes(b"{")  # a crash mid-write
    reopened = Spool(tmp_path, 1 << 20)
    assert [entry.scan_id for entry in reopened.pending()] == [good]
    assert len(list((tmp_path / CORRUPT).iterdir())) == 3
    assert not (tmp_path / ".half.json.ab12cd34.tmp").exists()
    said, _ = reopened.take_losses()
    assert len(said) == 1 and "3 corrupt spool file(s)" in said[0] and "a-fifo" in said[0]


def test_an_unreadable_losses_record_is_itself_said(tmp_path: Path) -> None:
    Spool(tmp_path, 1 << 20)
    (tmp_path / LOSSES).write_bytes(b"\xff\xfe not json")
    said, _ = Spool(tmp_path, 1 << 20).take_losses()
    assert said and "earlier losses unknown" in said[0]


def test_the_corrupt_quarantine_is_bounded(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 8192)
    for number in range(40):
        (tmp_path / f"junk-{number}").write_bytes(b"j" * 100)
    spool = Spool(tmp_path, 8192)
    put(spool)
    assert len(list((tmp_path / CORRUPT).iterdir())) <= 16


def finding(check: str, severity: Severity, number: int) -> Finding:
    return Finding(
        check=check,
        title="t",
        severity=severity,
        kind=FindingKind.PRIVATE_KEY,
        path=f"/keys/{number}".encode(),
    )


def test_a_report_is_cut_to_fit_the_console_worst_first_and_the_cut_said() -> None:
    report = Report(root="/", scanner_version="1", implementation="python", checks=("425",))
    report.findings = [finding("425", Severity.MEDIUM, n) for n in range(30)]
    report.findings += [finding("426", Severity.HIGH, n) for n in range(5)]
    report.problems = [Problem(ProblemKind.WALK, f"dir {n}") for n in range(12)]
    body = json.loads(cap_report(report, max_findings=10, max_problems=4))
    assert len(body["findings"]) == 10
    assert [f["check"] for f in body["findings"][:5]] == ["426"] * 5  # the worst kept
    kinds = [problem["kind"] for problem in body["problems"]]
    assert kinds.count("walk") == 4 and "truncated" in kinds and "could-not-verify" in kinds
    truncated = next(p for p in body["problems"] if p["kind"] == "truncated")["message"]
    assert "425: 25" in truncated and "426" not in truncated
    assert body["complete"] is False  # problems were cut: items left unjudged


def test_a_report_over_the_byte_bound_is_halved_until_it_fits() -> None:
    report = Report(root="/", scanner_version="1", implementation="python", checks=("425",))
    report.findings = [finding("425", Severity.LOW, n) for n in range(2000)]
    body = cap_report(report, max_findings=2000, max_problems=10, max_bytes=50_000)
    assert len(body) <= 50_000
    document = json.loads(body)
    assert 0 < len(document["findings"]) < 2000
    assert any(p["kind"] == "truncated" for p in document["problems"])
