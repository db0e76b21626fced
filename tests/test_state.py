"""Incremental rescans (--state, --rescan): what is reused, what is caught, what drops the state."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import pytest
from debroot import copy_root, debootstrap_root

import scanner
from scanner import cli, state
from scanner.errors import UsageError
from scanner.progress import Phase
from scanner.scan import scan_image

BINARY = b"\x7fELF\x02\x01\x01" + b"\0" * 4000 + b"tool"
SCRIPT = b"#!/bin/sh\necho helper\n"


def _settle() -> None:
    """Let a just-written tree age past the racy window (state.RACY_NS): otherwise its clean
    verdicts are recorded as racy and a stat rescan re-reads them, proving nothing."""
    time.sleep(state.RACY_NS / 1e9 + 0.1)


def _dpkg_root(base: Path) -> Path:
    """A real-format dpkg root: package `tool` owns a binary, a script and a document; one
    unowned file and one file under /opt that only the content checks see."""
    root = base / "root"
    for directory in ("usr/bin", "usr/share/doc/tool", "var/lib/dpkg/info", "opt/app"):
        (root / directory).mkdir(parents=True)
    files = {
        "usr/bin/tool": BINARY,
        "usr/bin/helper": SCRIPT,
        "usr/share/doc/tool/copyright": b"GPL\n",
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    os.chmod(root / "usr/bin/tool", 0o755)
    os.chmod(root / "usr/bin/helper", 0o755)
    (root / "opt/app/config.txt").write_bytes(b"plain settings\n" * 100)
    (root / "var/lib/dpkg/status").write_text(
        "Package: tool\nStatus: install ok installed\nVersion: 1.0-1\nArchitecture: amd64\n"
        "Description: a tool\n\n"
    )
    _md5sums(root, files)
    (root / "var/lib/dpkg/info/tool.list").write_text(
        "/usr\n/usr/bin\n" + "".join(f"/{name}\n" for name in files)
    )
    return root


def _md5sums(root: Path, files: dict[str, bytes]) -> None:
    (root / "var/lib/dpkg/info/tool.md5sums").write_text(
        "".join(f"{hashlib.md5(data).hexdigest()}  {name}\n" for name, data in files.items())
    )


def _view(report: scanner.Report) -> list[tuple[object, ...]]:
    """Findings and non-state problems, order-free: what a rescan must reproduce exactly."""
    found = sorted(json.dumps(f.to_dict(), sort_keys=True) for f in report.findings)
    problems = sorted(
        json.dumps(p.to_dict(), sort_keys=True) for p in report.problems if p.kind != "state"
    )
    return [tuple(found), tuple(problems)]


def _state_problems(report: scanner.Report) -> list[str]:
    return [p.message for p in report.problems if p.kind == "state"]


def _replace_keeping_mtime(path: Path, data: bytes) -> None:
    """Rewrite a file in place (same inode), then put its mtime back as `touch -r` would."""
    before = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert after.st_mtime_ns == before.st_mtime_ns and after.st_ino == before.st_ino
    assert after.st_ctime_ns != before.st_ctime_ns  # what user space cannot undo


@pytest.fixture
def first(tmp_path: Path, scan_impl: str) -> tuple[Path, Path, scanner.Report]:
    """A settled root, its first scan with a state file (outside the root), and the report."""
    root = _dpkg_root(tmp_path)
    _settle()
    state_file = tmp_path / "scan.state"
    report = scanner.scan_root(root, state=state_file)
    assert report.findings == [] and report.complete
    assert report.notices and "none yet" in report.notices[0]
    assert state_file.exists() and state_file.stat().st_mode & 0o077 == 0
    return root, state_file, report


def test_unchanged_rescan_reuses_every_clean_verdict(
    first: tuple[Path, Path, scanner.Report],
) -> None:
    root, state_file, report = first
    for level in ("stat", "content"):
        again = scanner.scan_root(root, state=state_file, rescan=level)
        assert _view(again) == _view(report) and _state_problems(again) == []
        assert again.stats.files_reused == report.stats.files_hashed > 3
        assert again.stats.files_hashed == 0
        assert again.stats.files_checked == report.stats.files_checked


@pytest.mark.parametrize("level", ["stat", "content"])
def test_touch_r_restored_mtime_is_caught(
    first: tuple[Path, Path, scanner.Report], level: str
) -> None:
    root, state_file, report = first
    tool = root / "usr/bin/tool"
    _replace_keeping_mtime(tool, BINARY.replace(b"tool", b"evil"))  # same size, same mtime
    again = scanner.scan_root(root, state=state_file, rescan=level)
    assert [(f.kind, f.path) for f in again.findings] == [("modified", b"usr/bin/tool")]
    assert again.stats.files_reused == report.stats.files_hashed - 1  # only the altered one read
    # The altered file's verdict was a finding: the next rescan judges it again, never reuses.
    third = scanner.scan_root(root, state=state_file, rescan="stat")
    assert _view(third) == _view(again)


def test_content_rescan_reads_every_file_and_catches_what_stat_cannot(
    first: tuple[Path, Path, scanner.Report],
) -> None:
    """Stat trusts ctime; content does not. Simulate a change invisible to stat by editing the
    state's xxh3 (as if the bytes had changed under an identical inode, size, mtime and ctime)."""
    root, state_file, _report = first
    header, entries = state.decode(state_file.read_bytes())
    old = entries[b"usr/bin/tool"]
    entries[b"usr/bin/tool"] = (*old[:8], bytes(16))
    state_file.write_bytes(state.encode(header, entries))
    by_stat = scanner.scan_root(root, state=state_file, rescan="stat")
    assert by_stat.stats.files_hashed == 0  # stat reuses it: identity unchanged
    entries[b"usr/bin/tool"] = (*old[:8], bytes(16))
    state_file.write_bytes(state.encode(header, entries))
    by_content = scanner.scan_root(root, state=state_file, rescan="content")
    assert by_content.stats.files_hashed == 1  # the xxh3 mismatch: fully verified again
    assert by_content.findings == []  # the file itself is intact


def test_file_replaced_by_rename_is_caught(first: tuple[Path, Path, scanner.Report]) -> None:
    root, state_file, _report = first
    tool = root / "usr/bin/tool"
    before = tool.stat()
    replacement = root / "usr/bin/.tool.new"
    replacement.write_bytes(BINARY.replace(b"tool", b"evil"))
    os.chmod(replacement, 0o755)
    os.utime(replacement, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.rename(replacement, tool)  # same size, same mtime, new inode
    assert tool.stat().st_ino != before.st_ino and tool.stat().st_size == before.st_size
    again = scanner.scan_root(root, state=state_file, rescan="stat")
    assert [(f.kind, f.path) for f in again.findings] == [("modified", b"usr/bin/tool")]


def test_a_changed_manifest_entry_invalidates_that_file(
    first: tuple[Path, Path, scanner.Report],
) -> None:
    """The file is untouched; its package record now says another digest: judged again."""
    root, state_file, _report = first
    _md5sums(
        root,
        {
            "usr/bin/tool": BINARY + b"upgrade",
            "usr/bin/helper": SCRIPT,
            "usr/share/doc/tool/copyright": b"GPL\n",
        },
    )
    again = scanner.scan_root(root, state=state_file, rescan="stat")
    assert [(f.kind, f.path) for f in again.findings] == [("modified", b"usr/bin/tool")]
    assert again.stats.files_hashed == 2  # the tool, and the rewritten md5sums file itself


def test_new_file_is_seen_by_the_content_checks(first: tuple[Path, Path, scanner.Report]) -> None:
    root, state_file, _report = first
    shutil.copy(root / "usr/bin/helper", root / "opt/app/xmrig")  # 426: a miner's name
    again = scanner.scan_root(root, state=state_file, rescan="stat")
    full = scanner.scan_root(root)
    assert _view(again) == _view(full)
    assert [(f.check, f.path) for f in again.findings] == [("426", b"opt/app/xmrig")]


def _older_version(data: bytes) -> bytes:
    header, entries = state.decode(data)
    header["scanner"] = "0.0.1"
    return state.encode(header, entries)


def _flip(data: bytes) -> bytes:
    middle = bytearray(data)
    middle[len(data) // 2] ^= 0x01
    return bytes(middle)


def _other_check_version(data: bytes) -> bytes:
    header, entries = state.decode(data)
    header["checks"]["448"] = 0
    return state.encode(header, entries)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda data: data[: len(data) - 10], "checksum"),
        (lambda data: data[:7], "magic"),
        (_flip, "checksum"),
        (_older_version, "scanner version"),
        (_other_check_version, "check versions"),
        (lambda data: b"{}" + data, "magic"),
    ],
    ids=["truncated", "cut-in-magic", "flipped-byte", "older-scanner", "older-check", "garbage"],
)
def test_bad_state_means_a_full_scan_and_a_problem(
    first: tuple[Path, Path, scanner.Report], damage: object, says: str
) -> None:
    root, state_file, _report = first
    (root / "usr/bin/tool").write_bytes(BINARY + b"!")  # so that a wrong reuse would show
    state_file.write_bytes(damage(state_file.read_bytes()))  # type: ignore[operator]
    again = scanner.scan_root(root, state=state_file, rescan="stat")
    [message] = _state_problems(again)
    assert says in message and "full scan" in message
    assert again.stats.files_reused == 0
    assert _view(again) == _view(scanner.scan_root(root))
    assert [f.path for f in again.findings] == [b"usr/bin/tool"]
    assert again.complete  # a stale state is not an unverified item
    # ... and the state was rewritten: the next rescan uses it.
    assert _state_problems(scanner.scan_root(root, state=state_file)) == []


def test_state_of_another_root_is_foreign(
    first: tuple[Path, Path, scanner.Report], tmp_path: Path
) -> None:
    root, state_file, _report = first
    other = tmp_path / "other"
    shutil.copytree(root, other, symlinks=True)
    (other / "usr/bin/tool").write_bytes(BINARY + b"!")
    again = scanner.scan_root(other, state=state_file)
    [message] = _state_problems(again)
    assert "another target" in message
    assert again.stats.files_reused == 0
    assert [f.path for f in again.findings] == [b"usr/bin/tool"]


def test_other_options_drop_the_state(first: tuple[Path, Path, scanner.Report]) -> None:
    root, state_file, _report = first
    again = scanner.scan_root(root, state=state_file, all_files=True)
    assert "options" in _state_problems(again)[0]
    again = scanner.scan_root(root, state=state_file, checks=["448"])
    assert "check versions or selection" in _state_problems(again)[0]


def test_full_rescan_ignores_but_rewrites_the_state(
    first: tuple[Path, Path, scanner.Report],
) -> None:
    root, state_file, report = first
    state_file.write_bytes(b"garbage")
    again = scanner.scan_root(root, state=state_file, rescan="full")
    assert _state_problems(again) == [] and again.stats.files_reused == 0
    assert state.decode(state_file.read_bytes())[0]["count"] == report.stats.files_hashed


def test_state_inside_the_root_needs_consent(tmp_path: Path) -> None:
    root = _dpkg_root(tmp_path)
    inside = root / "var/lib/scan.state"
    with pytest.raises(UsageError, match="inside the scanned root"):
        scanner.scan_root(root, state=inside)
    assert not inside.exists()
    report = scanner.scan_root(root, state=inside, state_in_root=True)
    assert inside.exists() and report.findings == []
    again = scanner.scan_root(root, state=inside, state_in_root=True)
    assert b"var/lib/scan.state" not in state.decode(inside.read_bytes())[1]
    assert again.findings == [] and _state_problems(again) == []


def test_state_on_another_mount_under_the_root_is_outside(tmp_path: Path) -> None:
    """The walk never crosses a mount point: a volume mounted inside the root is not scanned."""
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on its own filesystem")
    root_stat = os.stat("/")
    assert state._inside(str(shm / "x.state"), "/", root_stat.st_dev) is False
    assert state._inside(str(tmp_path / "x.state"), str(tmp_path), os.stat(tmp_path).st_dev)


def test_encode_decode_round_trip() -> None:
    entries = {
        b"usr/bin/a": (1, 2, 3, 4, 5, 0o100755, 0, bytes(16), b"x" * 16),
        b"caf\xe9/na\xefve \n name": (1, 3, 0, 4, 5, 0o100644, 1, b"k" * 16, b"y" * 16),
    }
    header, decoded = state.decode(state.encode({"format": 1}, entries))
    assert decoded == entries and header["count"] == 2
    assert state.decode(state.encode({"format": 1}, {}))[1] == {}


def test_rescan_without_state_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        scanner.scan_root(tmp_path, rescan="stat")
    with pytest.raises(UsageError):
        scanner.scan_root(tmp_path, state=tmp_path.parent / "s", rescan="sometimes")
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), "--rescan", "stat"])


def test_cli_state_round_trip(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _dpkg_root(tmp_path)
    _settle()
    state_file = str(tmp_path / "cli.state")
    argv = [str(root), "--format", "json", "--quiet", "--state", state_file]
    assert cli.main(argv) == cli.EXIT_CLEAN
    first_report = json.loads(capsys.readouterr().out)
    assert cli.main([*argv, "--rescan", "content"]) == cli.EXIT_CLEAN
    second = json.loads(capsys.readouterr().out)
    assert second["stats"]["files_reused"] == first_report["stats"]["files_hashed"]
    state_path = Path(state_file)
    state_path.write_bytes(state_path.read_bytes()[:-1])
    assert cli.main(argv) == cli.EXIT_CLEAN  # a problem of kind "state" leaves the scan complete
    third = json.loads(capsys.readouterr().out)
    assert [p["kind"] for p in third["problems"]] == ["state"] and third["complete"] is True


@pytest.mark.debootstrap
@pytest.mark.parametrize("level", ["stat", "content"])
def test_debootstrap_rescan_finds_the_same_findings(tmp_path: Path, level: str) -> None:
    """A tampered minbase copy: first scan, second scan (nothing changed), a third after more
    tampering — each rescan's findings equal a full scan's."""
    root = copy_root(debootstrap_root(), tmp_path / "root")
    usr_bin = root / "usr/bin"
    with open(usr_bin / "cat", "ab") as handle:
        handle.write(b"\0")
    (usr_bin / "head").unlink()
    os.chmod(usr_bin / "wc", 0o4755)  # dpkg records no modes: no finding, but a new ctime
    shutil.copy(usr_bin / "sleep", root / "tmp/xmrig")  # the reference Fargate test, 426
    _settle()
    state_file = tmp_path / "deb.state"
    first_report = scanner.scan_root(root, state=state_file, all_files=True)
    assert {f.path for f in first_report.findings} >= {
        b"usr/bin/cat",
        b"usr/bin/head",
        b"tmp/xmrig",
    }
    second = scanner.scan_root(root, state=state_file, rescan=level, all_files=True)
    assert _view(second) == _view(first_report) and _state_problems(second) == []
    assert second.stats.files_reused > 3000
    _replace_keeping_mtime(usr_bin / "ls", (usr_bin / "ls").read_bytes()[::-1])
    third = scanner.scan_root(root, state=state_file, rescan=level, all_files=True)
    full = scanner.scan_root(root, all_files=True)
    assert _view(third) == _view(full)
    assert b"usr/bin/ls" in {f.path for f in third.findings}


def test_image_state_is_keyed_to_the_image_id(tmp_path: Path) -> None:
    """Each image scan unpacks into a new directory: the state names the image, not the
    directory; content rescans reuse verdicts, stat rescans find every inode new."""
    from imagebuilder import Put, build_layers, image_config, write_docker_save

    root = _dpkg_root(tmp_path)
    layers = build_layers(root, [Put("tmp/xmrig", SCRIPT, 0o755)], tmp_path / "layers")
    tarball = tmp_path / "image.tar"
    write_docker_save(
        tarball, layers, image_config(env=[]), ["example/app:1.0"], compression="gzip"
    )
    state_file = tmp_path / "image.state"
    first_report = scan_image(tarball, state=state_file)
    assert [(f.check, f.path) for f in first_report.findings] == [("426", b"tmp/xmrig")]
    assert state.decode(state_file.read_bytes())[0]["identity"]["target"].startswith(
        "image sha256:"
    )
    by_content = scan_image(tarball, state=state_file, rescan="content")
    assert _state_problems(by_content) == [] and _view(by_content) == _view(first_report)
    # The files were just unpacked: their verdicts were recorded as racy, so stat never reuses
    # them, but content does (the xxh3 of the bytes judged), the miner's finding replayed.
    assert by_content.stats.files_reused == first_report.stats.files_hashed
    assert by_content.stats.files_hashed == 0
    by_stat = scan_image(tarball, state=state_file, rescan="stat")
    assert _state_problems(by_stat) == [] and _view(by_stat) == _view(first_report)
    assert by_stat.stats.files_reused == 0


def test_findings_are_replayed_while_the_plan_holds(tmp_path: Path, scan_impl: str) -> None:
    """A file with a finding is not read again while it and 448's plan are unchanged; once a
    package record changes anywhere, its finding is judged again (it names the owning package)."""
    root = _dpkg_root(tmp_path)
    shutil.copy(root / "usr/bin/helper", root / "opt/app/xmrig")
    (root / "usr/bin/tool").write_bytes(BINARY + b"!")
    _settle()
    state_file = tmp_path / "scan.state"
    first_report = scanner.scan_root(root, state=state_file)
    expected = [("426", b"opt/app/xmrig"), ("448", b"usr/bin/tool")]
    assert sorted((f.check, f.path) for f in first_report.findings) == expected
    for level in ("stat", "content"):
        again = scanner.scan_root(root, state=state_file, rescan=level)
        assert _view(again) == _view(first_report) and _state_problems(again) == []
        assert again.stats.files_hashed == 0
        assert again.stats.files_reused == first_report.stats.files_hashed
    with open(root / "var/lib/dpkg/status", "a") as handle:  # another package: a new plan
        handle.write(
            "Package: other\nStatus: install ok installed\nVersion: 2\nArchitecture: all\n"
            "Description: other\n\n"
        )
    (root / "var/lib/dpkg/info/other.md5sums").write_text(
        f"{hashlib.md5(b'x').hexdigest()}  opt/app/other\n"
    )
    again = scanner.scan_root(root, state=state_file, rescan="stat")
    assert _view(again) == _view(scanner.scan_root(root))
    hashed = again.stats.files_hashed
    assert hashed >= 2  # the two findings' files (and the DB files that changed)


@pytest.mark.parametrize("verdicts", [{"x": 1}, 7, "text", [], None])
def test_sealed_state_with_nonsense_verdicts_is_judged_again(
    tmp_path: Path, verdicts: object
) -> None:
    """A state that passes its checksum but holds nonsense (a bug, a hand edit) never crashes
    the scan and never replays anything: the files it names are judged again."""
    root = _dpkg_root(tmp_path)
    shutil.copy(root / "usr/bin/helper", root / "opt/app/xmrig")
    _settle()
    state_file = tmp_path / "scan.state"
    first_report = scanner.scan_root(root, state=state_file)
    header, entries = state.decode(state_file.read_bytes())
    assert list(header["verdicts"]) == [b"opt/app/xmrig".hex()]
    header["verdicts"] = {b"opt/app/xmrig".hex(): verdicts} if verdicts != {"x": 1} else verdicts
    state_file.write_bytes(state.encode(header, entries))
    again = scanner.scan_root(root, state=state_file)
    assert _view(again) == _view(first_report)
    assert again.stats.files_hashed == 1  # the miner, judged again; the rest reused


def test_content_rescan_of_a_file_no_check_wants_any_more(
    first: tuple[Path, Path, scanner.Report],
) -> None:
    """Emptied since: 425 no longer wants it (and 426 never did): dropped, not judged."""
    root, state_file, _report = first
    (root / "opt/app/config.txt").write_bytes(b"")
    again = scanner.scan_root(root, state=state_file, rescan="content")
    assert _view(again) == _view(scanner.scan_root(root))
    assert again.stats.files_hashed == 0
    assert b"opt/app/config.txt" not in state.decode(state_file.read_bytes())[1]


def test_file_only_searched_and_over_the_content_limit_is_never_read(
    tmp_path: Path, scan_impl: str
) -> None:
    """Its lstat size is enough to report it skipped, with or without a state; no xxh3 is
    recorded for it (that would read it all), so each rescan reports it again, unread."""
    from test_hasher_content import _bytes_read

    root = _dpkg_root(tmp_path)
    big = root / "opt/app/big.log"
    with open(big, "wb") as handle:
        handle.write(b"-----BEGIN RSA PRIVATE KEY-----\n")
        handle.truncate(32 << 20)
    _settle()
    state_file = tmp_path / "scan.state"
    views = []
    for level in (None, "stat", "content"):
        before = _bytes_read()
        report = scanner.scan_root(root, state=state_file, rescan=level, content_limit=1 << 20)
        assert _bytes_read() - before < 8 << 20  # the 32 MiB file was not read
        skipped = [p.path for p in report.problems if p.kind == "content-skipped"]
        assert skipped == [b"opt/app/big.log"]
        views.append(_view(report))
    assert views[0] == views[1] == views[2]
    _header, entries = state.decode(state_file.read_bytes())
    assert b"opt/app/big.log" not in entries and b"usr/bin/tool" in entries


def _mistype(item: dict[str, object], how: str) -> None:
    field, value = how.split("=", 1)
    if field == "message":  # a problem's field: make the item a problem first
        item.update(problem=True, kind="could-not-verify", errno=None)
    item[field] = json.loads(value)


@pytest.mark.parametrize(
    "how",
    [
        "extra=5",
        'extra=[["a", 1, 2]]',
        'extra={"1": [[[]]]}',  # fine: judged like any other replayable record
        "title=7",
        'package={"name": "a", "version": "b", "manager": "c"}',
        'package=["a", "b"]',
        'config="yes"',
        "severity=true",
        'message=["x"]',
        "path=5",
        "check=null",
    ],
)
def test_sealed_state_with_mistyped_verdict_fields_is_judged_again(
    tmp_path: Path, how: str
) -> None:
    """Anyone can compute the seal: a recorded finding whose fields have the wrong JSON types
    (an `extra` that is a number crashed every writer, exit 5; a numeric title was replayed as
    it was) is not replayed: its file is judged again."""
    root = _dpkg_root(tmp_path)
    shutil.copy(root / "usr/bin/helper", root / "opt/app/xmrig")
    _settle()
    state_file = tmp_path / "scan.state"
    first_report = scanner.scan_root(root, state=state_file)
    header, entries = state.decode(state_file.read_bytes())
    [items] = header["verdicts"].values()
    if how.startswith("extra={"):
        items[0]["extra"] = json.loads(how.split("=", 1)[1])
        state_file.write_bytes(state.encode(header, entries))
        again = scanner.scan_root(root, state=state_file)
        assert [f.extra for f in again.findings] == [{"1": [[[]]]}]  # replayed, as recorded
        return
    _mistype(items[0], how)
    state_file.write_bytes(state.encode(header, entries))
    again = scanner.scan_root(root, state=state_file)
    assert _view(again) == _view(first_report)
    assert again.stats.files_hashed == 1  # the miner, judged again; the rest reused
    assert cli.main([str(root), "--state", str(state_file), "--format", "json", "--quiet",
                     "--output", str(tmp_path / "report.json")]) == 1  # fmt: skip


def _sealed(header: bytes, tail: bytes = b"") -> bytes:
    body = state.MAGIC + len(header).to_bytes(4, "little") + header + tail
    return body + hashlib.sha256(body).digest()


@pytest.mark.parametrize(
    "header",
    [
        b'{"count": Infinity, "paths_length": 0}',  # int() of it: OverflowError, exit 5
        b'{"count": -1, "paths_length": 78}',
        b'{"count": true, "paths_length": 0}',
        b'{"count": "0", "paths_length": 0}',
        b'{"count": 1e300, "paths_length": 0}',
        b'[{"count": 0}]',
        b'{"count": 0, "paths_length": 0, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"count": 0, "paths_length": 0, "x": [' + b"[]," * 600_000 + b"[]]}",
    ],
    ids=["inf", "negative", "bool", "string", "float", "list", "deep", "many-values"],
)
def test_sealed_state_with_a_header_out_of_range_means_a_full_scan(
    tmp_path: Path, header: bytes
) -> None:
    root = _dpkg_root(tmp_path)
    (root / "usr/bin/tool").write_bytes(BINARY + b"!")
    state_file = tmp_path / "scan.state"
    state_file.write_bytes(_sealed(header, b"\0" * 78 if b"-1" in header else b""))
    again = scanner.scan_root(root, state=state_file, rescan="stat")
    [message] = _state_problems(again)
    assert "corrupt" in message and "full scan" in message, message
    assert [f.path for f in again.findings] == [b"usr/bin/tool"]
    assert state.decode(state_file.read_bytes())[0]["count"] > 0  # rewritten, usable


def test_verdicts_too_many_to_read_back_are_left_out_of_the_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer never writes a header the reader would refuse (a state refused at every
    scan): past the bound the files with findings are left out, the clean ones kept."""
    root = _dpkg_root(tmp_path)
    shutil.copy(root / "usr/bin/helper", root / "opt/app/xmrig")
    _settle()
    state_file = tmp_path / "scan.state"
    monkeypatch.setattr(state, "MAX_HEADER_NODES", 20)  # ~15 without the verdict, ~35 with
    first_report = scanner.scan_root(root, state=state_file)
    header, entries = state.decode(state_file.read_bytes())
    assert header["verdicts"] == {} and b"opt/app/xmrig" not in entries
    assert b"usr/bin/tool" in entries
    again = scanner.scan_root(root, state=state_file)
    assert _view(again) == _view(first_report) and _state_problems(again) == []
    assert again.stats.files_hashed == 1  # the miner, judged again; the rest reused


@pytest.mark.parametrize("consent", [True, False])
def test_a_state_directory_in_the_root_swapped_for_a_symlink_is_not_followed(
    tmp_path: Path, consent: bool
) -> None:
    """A writer in the root turns the state's directory into a symlink to a host directory
    (/etc/sudoers.d, say) between scans: the state must not be read or written there."""
    root = _dpkg_root(tmp_path)
    (root / "var/lib/scan").mkdir()
    inside = root / "var/lib/scan/state"
    outside = tmp_path / "host-directory"
    outside.mkdir()
    if consent:
        scanner.scan_root(root, state=inside, state_in_root=True)
        assert inside.exists()
        shutil.rmtree(root / "var/lib/scan")
    else:  # already a symlink at the first scan: its realpath is outside the root
        os.rmdir(root / "var/lib/scan")
    (root / "var/lib/scan").symlink_to(outside)
    report = scanner.scan_root(root, state=inside, state_in_root=consent)
    assert list(outside.iterdir()) == []
    assert any("symlink" in message for message in _state_problems(report))


def test_write_atomically_stays_in_the_directory_it_was_given(tmp_path: Path) -> None:
    from scanner.atomic import write_atomically

    (tmp_path / "dir").mkdir()
    (tmp_path / "elsewhere").mkdir()
    fd = os.open(tmp_path / "dir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        (tmp_path / "dir").rename(tmp_path / "moved")
        (tmp_path / "dir").symlink_to(tmp_path / "elsewhere")  # swapped during the scan
        write_atomically(str(tmp_path / "dir/state"), b"data", directory_fd=fd)
    finally:
        os.close(fd)
    assert (tmp_path / "moved/state").read_bytes() == b"data"
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert [p.name for p in (tmp_path / "moved").iterdir()] == ["state"]  # no temp left


class _Stop(Exception):
    """Raised by a hostile progress callback in the middle of a scan."""


class _StopsTheWalk:
    def update(
        self, phase: Phase, done: int = 0, total: int | None = None, detail: str = ""
    ) -> None:
        if phase is Phase.WALK:
            raise _Stop


def _descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_scan_that_ends_early_releases_its_state_directory(
    tmp_path: Path, scan_impl: str
) -> None:
    # A state kept inside the root holds its directory open until it is saved: a long-lived
    # session whose scans fail (or whose iter_scan is abandoned) must not leak it each time.
    root = _dpkg_root(tmp_path)
    (root / "var/lib/scan").mkdir()
    state_file = root / "var/lib/scan/state"
    session = scanner.Scanner()
    arguments: dict[str, object] = {"state": state_file, "state_in_root": True}
    before = _descriptors()
    for _ in range(3):
        with pytest.raises(_Stop):
            session.scan_root(root, progress=_StopsTheWalk(), **arguments)  # type: ignore[arg-type]
    assert _descriptors() == before
    state_file.write_bytes(b"not a state")  # its problem is the first item streamed
    for _ in range(3):
        items = session.iter_scan(root, **arguments)  # type: ignore[arg-type]
        assert next(items).kind == "state"
        items.close()
    assert _descriptors() == before
