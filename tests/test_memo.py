"""In-process rescans (scanner/memo.py): what one process keeps between scans, and what drops it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_state import BINARY, _dpkg_root, _settle, _view

import scanner
from pkgdb import RootFS
from scanner import memo, state
from scanner.checks.package_binaries import PackageBinariesCheck
from scanner.manifests import read_manifests


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, int]]:
    """How many times the manifests were read, 448's plan made and a state file decoded."""
    calls = {"manifests": 0, "plan": 0, "decode": 0}
    plan, decode = PackageBinariesCheck.plan, state.decode

    def counting_read(root: RootFS) -> object:
        calls["manifests"] += 1
        return read_manifests(root)

    def counting_plan(self: PackageBinariesCheck, context: object) -> object:
        calls["plan"] += 1
        return plan(self, context)  # type: ignore[arg-type]

    def counting_decode(data: bytes) -> object:
        calls["decode"] += 1
        return decode(data)

    monkeypatch.setattr(memo, "read_manifests", counting_read)
    monkeypatch.setattr(PackageBinariesCheck, "plan", counting_plan)
    monkeypatch.setattr(state, "decode", counting_decode)
    memo.forget()
    yield calls
    memo.forget()


def _scanned(root: Path, state_file: Path, level: str | None = None) -> scanner.Report:
    return scanner.scan_root(root, state=state_file, rescan=level)


def _first_scan(tmp_path: Path) -> tuple[Path, Path, scanner.Report]:
    """(root, state file, report) of a first scan, with a state, of a settled dpkg root."""
    root = _dpkg_root(tmp_path)
    _settle()
    state_file = tmp_path / "scan.state"
    return root, state_file, _scanned(root, state_file)


def test_an_unchanged_root_is_not_parsed_again(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    root, state_file, first = _first_scan(tmp_path)
    _settle()  # the state file itself must be settled to be kept
    second = _scanned(root, state_file, "stat")
    assert counted == {"manifests": 1, "plan": 1, "decode": 1}
    for level in ("stat", "content"):
        again = _scanned(root, state_file, level)
        assert _view(again) == _view(first) and again.stats.files_hashed == 0
        assert again.stats.files_reused == first.stats.files_hashed
        assert again.stats.files_checked == first.stats.files_checked
    assert counted == {"manifests": 1, "plan": 1, "decode": 1}
    assert _view(second) == _view(first)
    full = _scanned(root, state_file, "full")  # trusts nothing kept
    assert _view(full) == _view(first)
    assert counted["manifests"] == 2 and counted["plan"] == 2


def test_a_scan_without_state_keeps_nothing(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    root = _dpkg_root(tmp_path)
    _settle()
    scanner.scan_root(root)
    scanner.scan_root(root)
    assert counted["manifests"] == 0  # read_manifests directly: nothing journaled, nothing kept
    assert memo.DEFAULT._root is None


def test_a_fresh_database_is_not_kept(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    """Written within the racy window: a change in the same timestamp tick could go unseen."""
    root = _dpkg_root(tmp_path)
    state_file = tmp_path / "scan.state"
    _scanned(root, state_file)
    _scanned(root, state_file, "stat")
    assert counted["manifests"] == 2


def test_a_changed_database_file_is_read_again(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    """Same size, mtime put back: the md5sums file's ctime still says it changed."""
    root, state_file, _first = _first_scan(tmp_path)
    md5sums = root / "var/lib/dpkg/info/tool.md5sums"
    before = md5sums.stat()
    text = md5sums.read_bytes()
    digest = text.split()[0]
    md5sums.write_bytes(text.replace(digest, bytes(reversed(digest)), 1))
    os.utime(md5sums, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = _scanned(root, state_file, "stat")
    assert counted["manifests"] == 2
    assert [(f.kind, f.path) for f in again.findings] == [("modified", b"usr/bin/tool")]


def test_a_database_file_that_appears_is_read(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    """A lookup that failed (status.d absent) is part of what the manifests depend on."""
    root, state_file, _first = _first_scan(tmp_path)
    (root / "usr/bin/other").write_bytes(BINARY)
    os.chmod(root / "usr/bin/other", 0o755)
    status_d = root / "var/lib/dpkg/status.d"
    status_d.mkdir()
    (status_d / "other").write_text(
        "Package: other\nVersion: 2\nArchitecture: amd64\nDescription: another\n\n"
    )
    (status_d / "other.md5sums").write_text(f"{'0' * 32}  usr/bin/other\n")
    again = _scanned(root, state_file, "stat")
    full = scanner.scan_root(root)
    assert ("modified", b"usr/bin/other") in [(f.kind, f.path) for f in again.findings]
    assert _view(again) == _view(full)
    assert counted["manifests"] == 2


def test_a_changed_directory_symlink_resolves_the_plan_again(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    """The manifests are unchanged; `bin -> usr/bin` now leads elsewhere: 448 must follow."""
    root = _dpkg_root(tmp_path)
    (root / "var/lib/dpkg/info/tool.list").write_text("/bin\n/bin/tool\n")
    tool_md5 = (root / "var/lib/dpkg/info/tool.md5sums").read_text().splitlines()[0].split()[0]
    (root / "var/lib/dpkg/info/tool.md5sums").write_text(f"{tool_md5}  bin/tool\n")
    os.symlink("usr/bin", root / "bin")
    (root / "opt/evil").mkdir()
    (root / "opt/evil/tool").write_bytes(BINARY.replace(b"tool", b"evil"))
    os.chmod(root / "opt/evil/tool", 0o755)
    _settle()
    state_file = tmp_path / "scan.state"
    first = _scanned(root, state_file)
    assert first.findings == []
    (root / "bin").unlink()
    os.symlink("opt/evil", root / "bin")
    again = _scanned(root, state_file, "stat")
    assert counted == {"manifests": 1, "plan": 2, "decode": 1}  # the plan is made again
    assert [(f.kind, f.path) for f in again.findings] == [("modified", b"opt/evil/tool")]
    assert _view(again) == _view(scanner.scan_root(root))


def test_other_excludes_make_the_plan_again(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    root, _state_file, _first = _first_scan(tmp_path)
    scanner.scan_root(root, state=tmp_path / "other.state", excludes=["/usr/share/*"])
    assert counted["plan"] == 2


def test_a_rewritten_state_file_is_decoded_again(
    tmp_path: Path, scan_impl: str, counted: dict[str, int]
) -> None:
    root, state_file, _first = _first_scan(tmp_path)
    _settle()
    _scanned(root, state_file, "stat")
    header, entries = state.decode(state_file.read_bytes())
    del entries[b"usr/bin/tool"]
    state_file.write_bytes(state.encode(header, entries))
    again = _scanned(root, state_file, "stat")
    assert counted["decode"] == 3  # the first rescan's, this test's own, and this one's
    assert again.stats.files_hashed == 1  # the dropped entry is verified again


def test_rootfs_journal_sees_changes_and_appearances(tmp_path: Path) -> None:
    (tmp_path / "db").mkdir()
    (tmp_path / "db/a").write_bytes(b"one")
    with RootFS(str(tmp_path)) as root:
        journal = root.start_journal()
        assert root.read_bytes(b"db/a") == b"one"
        assert root.listdir(b"db") == [b"a"]
        with pytest.raises(FileNotFoundError):
            root.lstat(b"db/missing")
        assert root.stop_journal() is journal and root.journal is None
        assert set(journal) == {(False, b"db/a"), (True, b"db"), (False, b"db/missing")}
        assert journal[False, b"db/missing"] == 2  # ENOENT
        assert root.unchanged(journal)
    before = (tmp_path / "db/a").stat()
    (tmp_path / "db/a").write_bytes(b"two")
    os.utime(tmp_path / "db/a", ns=(before.st_atime_ns, before.st_mtime_ns))
    with RootFS(str(tmp_path)) as root:
        assert not root.unchanged(journal)
    with RootFS(str(tmp_path)) as root:
        fresh = root.start_journal()
        root.read_bytes(b"db/a")
        with pytest.raises(FileNotFoundError):
            root.lstat(b"db/missing")
        root.stop_journal()
        assert root.unchanged(fresh)
    (tmp_path / "db/missing").write_bytes(b"")
    with RootFS(str(tmp_path)) as root:
        assert not root.unchanged(fresh)  # db/missing appeared


def test_rootfs_components_follow_the_directory_symlinks(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "opt").mkdir()
    os.symlink("usr/bin", tmp_path / "bin")
    with RootFS(str(tmp_path)) as root:
        assert root.resolve(b"bin/ls") == b"usr/bin/ls"
        components = root.components()
    assert set(components) == {b"bin", b"usr", b"usr/bin"}
    (tmp_path / "usr/bin/new").write_bytes(b"")  # a directory's content is not its resolution
    with RootFS(str(tmp_path)) as root:
        assert root.same_components(components)
    (tmp_path / "bin").unlink()
    os.symlink("/opt", tmp_path / "bin")
    with RootFS(str(tmp_path)) as root:
        assert not root.same_components(components)
        assert root.resolve(b"bin/ls") == b"opt/ls"


def test_rootfs_components_see_a_directory_become_a_link_and_a_link_appear(
    tmp_path: Path,
) -> None:
    (tmp_path / "usr/lib").mkdir(parents=True)
    (tmp_path / "lib").mkdir()
    with RootFS(str(tmp_path)) as root:
        assert root.resolve(b"lib/x") == b"lib/x"
        assert root.resolve(b"gone/y") == b"gone/y"  # a missing directory: an errno seen
        components = root.components()
    (tmp_path / "lib").rmdir()
    os.symlink("usr/lib", tmp_path / "lib")
    with RootFS(str(tmp_path)) as root:
        assert not root.same_components(components)
    (tmp_path / "lib").unlink()
    (tmp_path / "lib").mkdir()
    with RootFS(str(tmp_path)) as root:
        assert root.same_components(components)
    os.symlink("usr/lib", tmp_path / "gone")
    with RootFS(str(tmp_path)) as root:
        assert not root.same_components(components)
