"""Hostile dpkg and apk databases: a problem or a clear error each, in bounded time and memory."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import pytest
from child import PEAK_RSS_SOURCE, run_python
from debian.debian_support import Version
from trees import make_dpkg_root

import scanner
from pkgdb import RootFS, dpkg
from pkgdb.dpkg_files import parse_conffiles, parse_diversions, parse_md5sums
from pkgdb.stanzas import MalformedLines, Stanza, parse_stanzas

ELF = b"\x7fELF\x02\x01\x01" + bytes(200)
STANZA = b"Package: tool\nStatus: install ok installed\nVersion: 1.0\nArchitecture: amd64\n\n"


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("no answer within the time allowed")


def within(seconds: int, call: Callable[[], object]) -> object:
    """`call()`, failing (not hanging) when it takes longer than `seconds`."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(seconds)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def problems(report: scanner.Report) -> list[str]:
    return [f"{p.to_dict().get('path')}: {p.message}" for p in report.problems]


# --- 1. crashes and hangs -------------------------------------------------------------------


@pytest.mark.parametrize("size", [64 << 10, 1 << 20])
def test_status_line_without_colon_is_parsed_in_linear_time(size: int) -> None:
    # A search for the next field restarted at each byte of the line: 64 KiB took 17 s.
    data = b"Package: a\nStatus: install ok installed\n" + b"x" * size + b"\nVersion: 1\n\n"
    items = within(3, lambda: list(parse_stanzas(data, frozenset({b"Package", b"Version"}))))
    assert items == [
        MalformedLines(3, 3, "neither a 'Field: value' line nor a continuation line"),
        Stanza(1, {b"Package": b"a", b"Version": b"1"}),
    ]


@pytest.mark.parametrize(
    "line",
    [
        b"x" * (1 << 20),
        b"a:" * (1 << 19),
        b" " * (1 << 20),
        b"\t:" * (1 << 19),
        (b"x" * 1000 + b"\n") * 1000,
        b"Conffiles:\n" + b" /a b\n" * (1 << 16),
    ],
    ids=["letters", "colons", "spaces", "tab-colon", "many-lines", "conffiles"],
)
def test_status_shapes_are_read_in_bounded_time(tmp_path: Path, line: bytes) -> None:
    root = make_dpkg_root(tmp_path / "root", {})
    (root / "var/lib/dpkg/status").write_bytes(STANZA + line + b"\n\n" + STANZA)

    def read() -> dpkg.DpkgDB:
        with RootFS(root) as fs:
            return dpkg.read(fs)

    db = within(5, read)
    assert isinstance(db, dpkg.DpkgDB) and [p.name for p in db.packages] == ["tool"]


def test_md5sums_fifo_is_a_problem(tmp_path: Path, scan_impl: str) -> None:
    # The prefetch hint on a FIFO raised ESPIPE ("Illegal seek"): a crash, exit 5.
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF})
    md5sums = root / "var/lib/dpkg/info/tool.md5sums"
    md5sums.unlink()
    os.mkfifo(md5sums)
    report = within(10, lambda: scanner.scan_root(root, checks=["448"]))
    assert not report.complete
    assert any("tool.md5sums" in p and "not a regular file" in p for p in problems(report))


def test_md5sums_path_with_a_nul_byte_is_a_malformed_line(tmp_path: Path, scan_impl: str) -> None:
    # A NUL reached os.lstat: ValueError ("embedded null byte"), a crash.
    good = hashlib.md5(ELF).hexdigest().encode()
    md5sums = good + b"  usr/bin/tool\n" + good + b"  usr/bin/a\0b\n"
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF}, md5sums=md5sums)
    report = scanner.scan_root(root, checks=["448"])
    assert not report.complete and report.findings == []
    assert any("line 2: path contains a NUL byte" in p for p in problems(report))


@pytest.mark.parametrize(
    ("parse", "data"),
    [
        (parse_md5sums, b"0" * 32 + b"  a\0b\n"),
        (parse_conffiles, b" /etc/a\0b " + b"0" * 32),
        (parse_diversions, b"/a\0b\n/c\n:\n"),
    ],
    ids=["md5sums", "conffiles", "diversions"],
)
def test_nul_in_any_recorded_path_is_an_error(
    parse: Callable[[bytes], tuple[object, list[tuple[int, str]]]], data: bytes
) -> None:
    found, errors = parse(data)
    assert not found and len(errors) == 1


@pytest.mark.parametrize("components", [1000, 2030])
def test_md5sums_path_of_many_components(tmp_path: Path, scan_impl: str, components: int) -> None:
    # Each component was one level of recursion in RootFS: RecursionError, a crash.
    deep = b"usr/bin/" + b"/".join([b"d"] * components) + b"/tool"
    good = hashlib.md5(ELF).hexdigest().encode()
    md5sums = good + b"  " + deep + b"\n" + good + b"  usr/bin/tool\n"
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF}, md5sums=md5sums)
    report = scanner.scan_root(root, checks=["448"])
    [finding] = report.findings  # a binary the package lists but is not there
    assert finding.kind == "missing" and finding.path == deep


def test_symlink_target_of_many_components_resolves(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    os.symlink("/" + "./" * 2000 + "real", root / "link")
    with RootFS(root) as fs:
        assert fs.resolve(b"link/file") == b"real/file"


def _rss_after_reading(root: Path) -> dict[str, object]:
    source = (
        "import json, sys\n"
        "from pkgdb import READERS, RootFS, PkgDBError\n"
        "errors = []\n"
        f"with RootFS({str(root)!r}) as fs:\n"
        "    for reader in READERS:\n"
        "        if reader.present(fs):\n"
        "            try:\n"
        "                reader.read(fs)\n"
        "            except PkgDBError as error:\n"
        "                errors.append(str(error))\n"
        f"rss = {PEAK_RSS_SOURCE}\n"
        "print(json.dumps({'errors': errors, 'rss_kib': rss}))\n"
    )
    result: dict[str, object] = json.loads(run_python(source))
    return result


@pytest.mark.parametrize("db", ["var/lib/dpkg/status", "lib/apk/db/installed"])
def test_sparse_3_gb_database_is_refused_before_reading(tmp_path: Path, db: str) -> None:
    # It was read up to the 256 MiB limit (537 MiB RSS with the join) before being refused.
    root = tmp_path / "root"
    (root / db).parent.mkdir(parents=True)
    (root / "var/lib/dpkg/info").mkdir(parents=True, exist_ok=True)
    with open(root / db, "wb") as handle:
        handle.write(STANZA)
        handle.truncate(3 << 30)
    result = _rss_after_reading(root)
    [error] = result["errors"]  # type: ignore[misc]
    assert "larger than 256 MiB, not read" in error
    assert int(result["rss_kib"]) < 150 * 1024  # type: ignore[call-overload]


def test_sparse_dpkg_config_is_refused_before_reading(tmp_path: Path) -> None:
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF})
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    with open(root / "etc/dpkg/dpkg.cfg.d/huge", "wb") as handle:
        handle.truncate(3 << 30)
    result = _rss_after_reading(root)
    assert result["errors"] == []
    assert int(result["rss_kib"]) < 150 * 1024  # type: ignore[call-overload]
    with RootFS(root) as fs:
        db = dpkg.read(fs)
    assert any("huge" in p.source.decode() and "path filters" in p.message for p in db.problems)


# --- 2. a database path that is there but unusable is a problem, not "no database" ----------


def _loop(path: Path) -> None:
    os.symlink(path.name, path)  # points at itself


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _file(path: Path) -> None:
    path.write_bytes(b"not a directory\n")


def _device(path: Path) -> None:
    try:
        os.mknod(path, 0o600 | 0o020000, os.makedev(1, 3))  # a character device, like /dev/null
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")


_BREAKERS = {"loop": _loop, "fifo": _fifo, "file": _file, "device": _device}


@pytest.mark.parametrize(
    ("place", "breaker"),
    [
        ("var/lib/dpkg", "loop"),
        ("var/lib/dpkg", "fifo"),
        ("var/lib/dpkg", "file"),
        ("var/lib/dpkg", "device"),
        ("var/lib", "loop"),
        ("var/lib/dpkg/status.d", "fifo"),
        ("var/lib/dpkg/status", "loop"),
        ("var/lib/dpkg/status", "device"),
        ("lib/apk/db", "loop"),
        ("lib/apk/db", "fifo"),
        ("lib/apk", "device"),
        ("lib/apk/db/installed", "loop"),
        ("usr/lib/apk/db", "loop"),
    ],
)
def test_unusable_database_path_is_a_problem(
    tmp_path: Path, scan_impl: str, place: str, breaker: str
) -> None:
    root = tmp_path / "root"
    target = root / place
    target.parent.mkdir(parents=True)
    _BREAKERS[breaker](target)
    report = scanner.scan_root(root, checks=["448"])
    assert not report.complete, problems(report)
    kinds = {p.kind for p in report.problems}
    assert "package-db" in kinds and "no-package-db" not in kinds, problems(report)


def test_looping_info_directory_is_a_problem(tmp_path: Path, scan_impl: str) -> None:
    root = make_dpkg_root(tmp_path / "root", {b"usr/bin/tool": ELF})
    info = root / "var/lib/dpkg/info"
    for name in os.listdir(info):
        os.unlink(info / name)
    info.rmdir()
    _loop(info)
    report = scanner.scan_root(root, checks=["448"])
    assert not report.complete
    assert any("var/lib/dpkg/info" in p for p in problems(report))


@pytest.mark.parametrize(
    "layout",
    [{}, {"var/lib/dpkg/": None}, {"var": "file"}, {"lib/apk/db/": None}, {"var/lib": "file"}],
    ids=["empty", "empty-dpkg-dir", "var-is-a-file", "empty-apk-dir", "var-lib-is-a-file"],
)
def test_no_database_is_still_said_and_complete(
    tmp_path: Path, layout: dict[str, str | None]
) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for place, kind in layout.items():
        if kind is None:
            (root / place).mkdir(parents=True)
        else:
            (root / place).parent.mkdir(parents=True, exist_ok=True)
            _file(root / place)
    report = scanner.scan_root(root, checks=["448"])
    assert report.complete and [p.kind for p in report.problems] == ["no-package-db"]


# --- 3. the image's own path filters excuse only absent files -------------------------------


def _filtered_root(tmp_path: Path) -> Path:
    root = make_dpkg_root(
        tmp_path / "root",
        {b"usr/bin/tool": ELF, b"usr/bin/gone": ELF, b"usr/share/doc/tool/README": b"doc\n"},
    )
    (root / "etc/dpkg/dpkg.cfg.d").mkdir(parents=True)
    (root / "etc/dpkg/dpkg.cfg.d/hide").write_bytes(
        b"path-exclude=/usr/bin/*\npath-exclude=/usr/share/doc/*\n"
    )
    (root / "usr/bin/gone").unlink()  # dropped as the filter says: excused
    (root / "usr/share/doc/tool/README").unlink()
    return root


def test_path_filters_do_not_excuse_a_present_modified_binary(
    tmp_path: Path, scan_impl: str
) -> None:
    root = _filtered_root(tmp_path)
    with open(root / "usr/bin/tool", "ab") as handle:
        handle.write(b"!")
    report = scanner.scan_root(root, checks=["448"], all_files=True)
    assert [(f.path, f.kind) for f in report.findings] == [(b"usr/bin/tool", "modified")]
    assert report.managers[0].filtered == 2 and report.complete


def test_path_filters_do_not_excuse_a_binary_replaced_by_a_symlink(
    tmp_path: Path, scan_impl: str
) -> None:
    root = _filtered_root(tmp_path)
    (root / "usr/bin/tool").unlink()
    os.symlink("/bin/sh", root / "usr/bin/tool")
    report = scanner.scan_root(root, checks=["448"])
    assert [(f.path, f.kind) for f in report.findings] == [(b"usr/bin/tool", "replaced-by-symlink")]


def test_path_filters_still_excuse_absent_files_and_intact_ones_pass(
    tmp_path: Path, scan_impl: str
) -> None:
    report = scanner.scan_root(_filtered_root(tmp_path), checks=["448"], all_files=True)
    assert report.findings == [] and report.complete
    assert report.managers[0].filtered == 2 and report.managers[0].files == 1


def test_path_filters_apply_to_the_diverted_place(tmp_path: Path) -> None:
    # `tool`'s usr/bin/tool is diverted by `other` to usr/bin/tool.real: that is where it must be
    root = _filtered_root(tmp_path)
    (root / "var/lib/dpkg/diversions").write_bytes(b"/usr/bin/tool\n/usr/bin/tool.real\nother\n")
    with RootFS(root) as fs:
        db = dpkg.read(fs)
    assert db.filtered == 3 and db.files == ()  # tool.real absent: excused like the others
    os.rename(root / "usr/bin/tool", root / "usr/bin/tool.real")
    with RootFS(root) as fs:
        db = dpkg.read(fs)
    assert db.filtered == 2 and [f.path for f in db.files] == [b"usr/bin/tool.real"]


# --- 4. dpkg default scope: programs outside bin/ are judged though dpkg records no mode ----

_SCRIPT = b"#!/bin/sh\necho helper\n"


@pytest.mark.parametrize(
    ("path", "content", "tamper", "kind"),
    [
        (b"usr/lib/openssh/sftp-server", ELF, "delete", "missing"),
        (b"usr/lib/apt/methods/http", ELF, "symlink", "replaced-by-symlink"),
        (b"usr/lib/apt/methods/http", ELF, "fifo", "not-a-regular-file"),
        (b"usr/lib/x86_64-linux-gnu/e2fsprogs/e2scrub_fail", _SCRIPT, "strip", "modified"),
        (b"usr/share/debconf/frontend", _SCRIPT, "strip", "modified"),
        (b"lib/init/init-d-script", _SCRIPT, "delete", "missing"),
        (b"usr/lib/terminfo/x/xterm", b"data", "delete", None),
        (b"usr/lib/locale/C.utf8/LC_CTYPE", b"data", "delete", None),
        (b"usr/lib/python3/dist-packages/x.py", b"data", "delete", None),
        (b"usr/share/doc/tool/README", b"data", "delete", None),
        (b"usr/share/doc/tool/README", b"data", "strip", None),
    ],
)
def test_dpkg_default_scope_of_programs_outside_bin(
    tmp_path: Path, scan_impl: str, path: bytes, content: bytes, tamper: str, kind: str | None
) -> None:
    root = make_dpkg_root(tmp_path / "root", {path: content})
    full = bytes(root) + b"/" + path
    os.unlink(full)
    if tamper == "symlink":
        os.symlink(b"/bin/true", full)
    elif tamper == "fifo":
        os.mkfifo(full)
    elif tamper == "strip":  # changed, and no longer executable
        with open(full, "wb") as handle:
            handle.write(content + b"changed\n")
        os.chmod(full, 0o644)
    report = scanner.scan_root(root, checks=["448"])
    assert [(f.path, f.kind) for f in report.findings] == ([(path, kind)] if kind else [])
    if kind is None:  # still verified with --all-files
        everything = scanner.scan_root(root, checks=["448"], all_files=True)
        assert [f.path for f in everything.findings] == [path]


# --- 5. dpkg epochs ------------------------------------------------------------------------


def test_epochs_of_a_real_status_agree_with_dpkg(shared_fixtures: Path, tmp_path: Path) -> None:
    status = shared_fixtures / "dpkg/status/ubuntu-24.04-amd64-lxc.status"
    root = make_dpkg_root(tmp_path / "root", {})
    (root / "var/lib/dpkg/status").write_bytes(status.read_bytes())
    with RootFS(root) as fs:
        db = dpkg.read(fs)
    with_epoch = [p for p in db.packages if ":" in p.version]
    assert len(with_epoch) >= 20  # 67 Version lines with an epoch, some of packages not installed
    assert all(p.epoch is None for p in db.packages if ":" not in p.version)
    dpkg_bin = shutil.which("dpkg")
    for package in with_epoch:
        assert str(package.epoch) == Version(package.version).epoch, package
        if dpkg_bin is None:
            continue
        rest = package.version.partition(":")[2]
        # dpkg itself: the version sorts above the same one an epoch lower, below the next epoch
        for op, other in (
            ("gt", f"{package.epoch - 1}:{rest}"),
            ("lt", f"{package.epoch + 1}:0"),
            ("eq", f"{package.epoch}:{rest}"),
        ):
            if op == "gt" and package.epoch == 0:
                continue
            compare = [dpkg_bin, "--compare-versions", package.version, op, other]
            assert subprocess.run(compare).returncode == 0, (package.version, op, other)


@pytest.mark.parametrize(
    ("version", "epoch", "problem"),
    [
        ("2.36.1-8", None, None),
        ("1:2.36.1-8+deb12u1", 1, None),
        ("0:1.0", 0, None),
        ("2147483647:1", 2147483647, None),
        ("2147483648:1", None, "its epoch is too big"),
        ("9" * 5000 + ":1", None, "its epoch is too big"),
        (":1.0", None, "its epoch is empty"),
        ("a:1.0", None, "its epoch is not a number"),
        ("-1:1.0", None, "its epoch is not a number"),
        ("\u0661:1.0", None, "its epoch is not a number"),  # an Arabic-Indic digit
        ("1:2:3-4", 1, None),  # colons in the upstream part are allowed
    ],
)
def test_epoch_parsing(
    tmp_path: Path, version: str, epoch: int | None, problem: str | None
) -> None:
    root = make_dpkg_root(tmp_path / "root", {})
    (root / "var/lib/dpkg/status").write_bytes(
        STANZA.replace(b"Version: 1.0", b"Version: " + version.encode())
    )
    with RootFS(root) as fs:
        db = dpkg.read(fs)
    [package] = db.packages
    assert (package.version.encode(), package.epoch) == (
        version.encode().decode("ascii", "backslashreplace").encode(),
        epoch,
    )
    found = [p.message for p in db.problems if "epoch" in p.message]
    assert [problem in m for m in found] == ([True] if problem else [])


@pytest.mark.parametrize("db", ["var/lib/dpkg/status", "lib/apk/db/installed"])
def test_a_device_node_where_a_database_belongs_is_never_opened(
    tmp_path: Path, db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Opening a device acts on the host (a watchdog, a tape): it is a problem, never opened."""
    root = tmp_path / "root"
    (root / db).parent.mkdir(parents=True)
    os.mknod(root / db, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
    opened: list[str] = []
    real_open = os.open

    def spy(path: object, flags: int, *args: object, **kwargs: object) -> int:
        named = isinstance(path, (str, bytes)) and os.fsdecode(path).endswith(os.path.basename(db))
        if named and not flags & os.O_PATH:  # O_PATH opens nothing: it is how we look
            opened.append(os.fsdecode(path))
        return real_open(path, flags, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", spy)
    report = scanner.scan_root(root, checks=["448"])
    monkeypatch.undo()
    assert opened == []
    assert not report.complete
    assert any("device" in p.message for p in report.problems), problems(report)


def test_apk_directory_of_thousands_of_components(tmp_path: Path, scan_impl: str) -> None:
    """Found by the mutation run: apk's protected-path rules were worked out one recursion per
    directory component, so a deep `F:` line was a RecursionError (exit 5)."""
    deep = b"/".join([b"d"] * 1500)  # 3,000 bytes: within PATH_MAX
    root = tmp_path / "root"
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_bytes(
        b"P:p\nV:1\nF:etc/" + deep + b"\nR:x\nZ:Q1" + b"A" * 27 + b"=\n\n"
    )
    report = scanner.scan_root(root, checks=["448"], all_files=True)
    assert [(f.kind, f.config) for f in report.findings] == [("missing", True)]  # under etc/
