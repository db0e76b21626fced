"""Scan sessions (scanner.Scanner): each keeps its own rescan memo, and scans on threads agree."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from imagebuilder import Put, build_layers, image_config, write_oci_layout
from test_state import BINARY, _dpkg_root, _settle

import scanner
from _native import Digest, HashResult, HashStatus, WalkEntry
from pkgdb import RootFS
from scanner import memo, state
from scanner.checks.base import LSTAT, Hit, ListingCheck, ScanContext, ScanOptions
from scanner.checks.package_binaries import PackageBinariesCheck
from scanner.content import content_pass
from scanner.manifests import read_manifests
from scanner.policy.model import Policy
from scanner.report import Finding, Problem, Severity, Stats

LEVELS = (None, "stat", "content", "stat")  # a first scan with a state, then rescans of it
WAIT = 20.0  # seconds a thread waits for the other: a bound, never reached when it works


def _normalised(report: scanner.Report, state_dir: Path) -> str:
    """The JSON report minus what differs between two runs of the same scan: its duration, its
    scan id, and the state file's own path (in notices and state problems)."""
    data: dict[str, Any] = report.to_dict()
    del data["stats"]["seconds"]
    del data["scan_id"]
    return json.dumps(data, sort_keys=True).replace(str(state_dir), "STATE")


def _roots(base: Path) -> tuple[Path, Path]:
    """Two different settled dpkg roots: one with a modified binary and a miner-named file."""
    first = _dpkg_root(base / "one")
    (first / "usr/bin/tool").write_bytes(BINARY.replace(b"tool", b"evil"))
    (first / "tmp").mkdir()
    (first / "tmp/xmrig").write_bytes(BINARY)
    os.chmod(first / "tmp/xmrig", 0o755)
    second = _dpkg_root(base / "two")
    (second / "usr/share/doc/tool/copyright").write_bytes(b"changed\n")
    _settle()
    return first, second


def _scans(
    scan: Callable[..., scanner.Report], root: Path, state_dir: Path, **options: Any
) -> list[str]:
    """A first scan writing a state and rescans reading it, each report normalised."""
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "scan.state"
    reports = []
    for level in LEVELS:
        report = scan(root, state=state_file, rescan=level, all_files=True, **options)
        reports.append(_normalised(report, state_dir))
        if level is None:
            _settle()  # the state file too must be settled for the rescans to reuse it
    return reports


def _threaded(*jobs: Callable[[], list[str]]) -> list[list[str]]:
    """Run the jobs on threads at once (a barrier starts them together); their results, or the
    first error raised."""
    start = threading.Barrier(len(jobs), timeout=WAIT)

    def run(job: Callable[[], list[str]]) -> list[str]:
        start.wait()
        return job()

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = [pool.submit(run, job) for job in jobs]
        return [future.result(timeout=120) for future in futures]


def test_two_sessions_on_two_threads_report_as_alone(tmp_path: Path, scan_impl: str) -> None:
    """Two roots, each rescanned by its own session on its own thread, concurrently; then the
    same root by two sessions at once (two state files): every report is the one it is alone."""
    first, second = _roots(tmp_path)
    alone_first = _scans(scanner.Scanner().scan_root, first, tmp_path / "a1")
    alone_second = _scans(scanner.Scanner().scan_root, second, tmp_path / "a2")
    assert alone_first != alone_second  # different roots, different reports
    assert '"files_reused": 0' not in alone_first[1]  # the stat rescan did reuse
    sessions = scanner.Scanner(), scanner.Scanner()
    together = _threaded(
        lambda: _scans(sessions[0].scan_root, first, tmp_path / "c1"),
        lambda: _scans(sessions[1].scan_root, second, tmp_path / "c2"),
    )
    assert together == [alone_first, alone_second]
    same_root = _threaded(
        lambda: _scans(sessions[0].scan_root, first, tmp_path / "s1"),
        lambda: _scans(sessions[1].scan_root, first, tmp_path / "s2"),
    )
    assert same_root == [alone_first, alone_first]
    shared = scanner.Scanner()  # correct too, only slower: each scan evicts the other's root
    assert _threaded(
        lambda: _scans(shared.scan_root, first, tmp_path / "h1"),
        lambda: _scans(shared.scan_root, second, tmp_path / "h2"),
    ) == [alone_first, alone_second]


@pytest.fixture
def manifest_reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bytes]]:
    """The roots whose package databases were read (parsed), in order."""
    reads: list[bytes] = []

    def counting(root: RootFS) -> object:
        reads.append(root.path)
        return read_manifests(root)

    monkeypatch.setattr(memo, "read_manifests", counting)
    memo.forget()
    yield reads
    memo.forget()


def test_a_session_keeps_its_root_while_another_scans_another(
    tmp_path: Path, scan_impl: str, manifest_reads: list[bytes]
) -> None:
    """Alternating two roots through two sessions, each session reads its root's databases
    once; through the one-shot calls (one default session), each root evicts the other."""
    first, second = _roots(tmp_path)
    sessions = {first: scanner.Scanner(), second: scanner.Scanner()}
    for _round in range(3):
        for root, session in sessions.items():
            session.scan_root(root, state=tmp_path / f"{root.parent.name}.state")
    assert sorted(manifest_reads) == sorted([os.fsencode(first), os.fsencode(second)])
    manifest_reads.clear()
    for _round in range(2):
        for root in sessions:
            scanner.scan_root(root, state=tmp_path / f"{root.parent.name}.state")
    assert len(manifest_reads) == 4  # documented: the default session keeps the last root only


def _pair(sessions: str) -> tuple[Callable[..., scanner.Report], Callable[..., scanner.Report]]:
    """The scan calls of threads A and B."""
    if sessions == "one-shot calls":
        return scanner.scan_root, scanner.scan_root
    one = scanner.Scanner()
    return one.scan_root, (one if sessions == "one shared session" else scanner.Scanner()).scan_root


@pytest.mark.parametrize("sessions", ["two sessions", "one shared session", "one-shot calls"])
def test_a_rescan_never_takes_another_scans_plan(
    tmp_path: Path, scan_impl: str, monkeypatch: pytest.MonkeyPatch, sessions: str
) -> None:
    """Thread A rescans a root; just as it has found the kept plan still good, thread B scans
    the same root with other excludes, which makes and keeps another plan. A must still use its
    own: the memo is read as one snapshot (with process-wide memo globals, A took B's plan, and
    lost its finding on the excluded binary)."""
    root, _second = _roots(tmp_path)
    scan_a, scan_b = _pair(sessions)
    memo.forget()
    first = scan_a(root, state=tmp_path / "a.state")
    alone = scan_a(root, state=tmp_path / "a.state", rescan="stat")
    assert ("modified", b"usr/bin/tool") in [(f.kind, f.path) for f in first.findings]
    checked, planned = threading.Event(), threading.Event()
    real = RootFS.same_components

    def held(self: RootFS, components: dict[bytes, object]) -> bool:
        same = real(self, components)  # type: ignore[arg-type]
        if threading.current_thread().name == "A":
            checked.set()
            assert planned.wait(WAIT), "B never made its plan"
        return same

    monkeypatch.setattr(RootFS, "same_components", held)
    reports: dict[str, scanner.Report] = {}

    def thread_a() -> None:
        reports["A"] = scan_a(root, state=tmp_path / "a.state", rescan="stat")

    def thread_b() -> None:
        assert checked.wait(WAIT), "A never checked its kept plan"
        try:
            reports["B"] = scan_b(root, state=tmp_path / "b.state", excludes=["/usr/bin/*"])
        finally:
            planned.set()

    threads = [threading.Thread(target=thread_a, name="A"), threading.Thread(target=thread_b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    memo.forget()
    assert set(reports) == {"A", "B"}
    assert _normalised(reports["A"], tmp_path) == _normalised(alone, tmp_path)
    assert ("modified", b"usr/bin/tool") not in [(f.kind, f.path) for f in reports["B"].findings]


def test_the_one_shot_calls_share_the_default_session(
    tmp_path: Path, scan_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """scanner.scan_root keeps, between calls, what a rescan reuses (a defender's loop of
    one-shot calls); a session's own calls leave the default session alone."""
    decoded: list[int] = []
    real = state.decode

    def counting(data: bytes) -> Any:
        decoded.append(len(data))
        return real(data)

    monkeypatch.setattr(state, "decode", counting)
    root, _second = _roots(tmp_path)
    memo.forget()
    scanner.scan_root(root, state=tmp_path / "scan.state")
    _settle()
    for _round in range(3):
        scanner.scan_root(root, state=tmp_path / "scan.state", rescan="stat")
    assert len(decoded) == 1
    session = scanner.Scanner()
    session.scan_root(root, state=tmp_path / "scan.state", rescan="stat")
    session.scan_root(root, state=tmp_path / "scan.state", rescan="stat")
    assert len(decoded) == 2  # its own decode, once
    session.forget()
    session.scan_root(root, state=tmp_path / "scan.state", rescan="stat")
    scanner.scan_root(root, state=tmp_path / "scan.state", rescan="stat")
    assert len(decoded) == 3  # forgotten by the session only
    memo.forget()


def test_a_session_scans_images_and_streams(tmp_path: Path, scan_impl: str) -> None:
    """scan_image and iter_scan through a session give what the one-shot calls give, and a
    rescan of the image through it reuses what the first scan recorded."""
    root, _second = _roots(tmp_path)
    layers = build_layers(root, [Put("/opt/app/new", b"added\n")], tmp_path / "layers")
    write_oci_layout(tmp_path / "oci", layers, image_config())
    session = scanner.Scanner()
    for directory in ("own", "one-shot"):
        (tmp_path / directory).mkdir()
    state_file = tmp_path / "own/image.state"
    first = session.scan_image(tmp_path / "oci", state=state_file, all_files=True)
    one_shot = scanner.scan_image(
        tmp_path / "oci", state=tmp_path / "one-shot/image.state", all_files=True
    )
    assert _normalised(first, tmp_path / "own") == _normalised(one_shot, tmp_path / "one-shot")
    _settle()
    again = session.scan_image(tmp_path / "oci", state=state_file, rescan="content", all_files=True)
    assert [f.to_dict() for f in again.findings] == [f.to_dict() for f in first.findings]
    assert again.stats.files_reused > 0 and again.stats.files_hashed == 0
    streamed = list(session.iter_scan(root, checks=["448"]))
    assert streamed == list(scanner.iter_scan(root, checks=["448"]))
    stream = session.iter_scan(root, policy=Policy(version=1, collections={}, rules=()))
    with pytest.raises(scanner.UsageError):
        next(stream)  # a policy is refused when the stream starts, as iter_scan does


class _Lister:
    """A ListingCheck of two paths, one of them absent, recording what it is asked."""

    id = "9990"
    title = "lists two paths"
    worst: Severity | None = None  # a ContentCheck's member since the report carries check info
    markers: tuple[bytes, ...] = ()
    capture: frozenset[int] = frozenset()

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes, object]] = []
        self._listed: dict[bytes, int] = {}

    @property
    def listed(self) -> dict[bytes, int]:
        return self._listed

    def prepare(self, context: ScanContext) -> Iterator[Finding | Problem]:
        self._listed = {b"usr/bin/helper": int(Digest.SHA256), b"usr/bin/gone": 0}
        return iter(())

    def wants(self, entry: WalkEntry) -> int:
        flags = self._listed.get(entry.path)
        return 0 if flags is None else flags | LSTAT

    def judge(
        self, context: ScanContext, entry: WalkEntry, result: HashResult, hits: list[Hit]
    ) -> Iterator[Finding | Problem]:
        self.calls.append(("judge", entry.path, result.sha256 is not None))
        return iter(())

    def judge_unmet(
        self, context: ScanContext, path: bytes, result: HashResult
    ) -> Iterator[Finding | Problem]:
        self.calls.append(("unmet", path, result.status))
        return iter(())


def test_the_content_pass_asks_every_check_alike(tmp_path: Path, scan_impl: str) -> None:
    """448 is one ContentCheck of the pass among others (a ListingCheck): any check listing
    paths is offered those the walk meets and, after it, read the others."""
    root = _dpkg_root(tmp_path)
    assert isinstance(PackageBinariesCheck(), ListingCheck)
    lister = _Lister()
    with RootFS(str(root)) as rootfs:
        context = ScanContext(
            root=rootfs, options=ScanOptions(), manifests=read_manifests(rootfs), stats=Stats()
        )
        items = list(content_pass(context, [PackageBinariesCheck(), lister]))
    assert items == []  # the dpkg root is intact
    assert lister.calls == [
        ("judge", b"usr/bin/helper", True),
        ("unmet", b"usr/bin/gone", HashStatus.MISSING),
    ]
    assert context.stats.files_checked == 3  # 448's three package files, judged in the pass
