"""Fuzzing the dpkg and apk readers with mutated real databases (../shared/fixtures/pkgdb).

Properties, on every mutation: the reader returns or raises only its own error (PkgDBError);
it answers within 10 s; and a damaged database is never a silent clean: if the mutated input
differs from the real one and the reader gives no package and no file, it must say why (a
problem or an error). A short seeded run is part of the suite; SCANROOT_FUZZ_EXAMPLES=N (and
SCANROOT_FUZZ_RANDOM=1 for fresh, non-derandomized inputs) runs a longer one locally.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import scanner
from pkgdb import PackageDB, PkgDBError, RootFS, apk, dpkg

EXAMPLES = int(os.environ.get("SCANROOT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("SCANROOT_FUZZ_RANDOM") != "1",
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
    database=None,
)
SCAN = settings(FUZZ, max_examples=max(EXAMPLES // 5, 10))
SHARED = Path(
    os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")
)
PKGDB = SHARED / "fixtures" / "pkgdb"
STATUS = PKGDB / "dpkg" / "status" / "ubuntu-24.04-amd64-lxc.status"
INFO = PKGDB / "dpkg" / "md5sums" / "ubuntu-24.04-amd64-lxc"
INSTALLED = PKGDB / "apk" / "alpine-3.19.1-aarch64-minirootfs.installed"
pytestmark = pytest.mark.skipif(
    not (STATUS.is_file() and INFO.is_dir() and INSTALLED.is_file()),
    reason=f"{PKGDB} absent: no real dpkg/apk databases to mutate",
)
# How many mutated databases each test read (printed by the last test, for the report).
RAN: dict[str, int] = {}


def _small_status() -> tuple[bytes, dict[str, bytes]]:
    """The first installed stanzas of the real status (12 packages) and their md5sums files."""
    if not STATUS.is_file():
        return b"", {}
    stanzas = STATUS.read_bytes().split(b"\n\n")
    kept: list[bytes] = []
    info: dict[str, bytes] = {}
    for text in stanzas:
        if b"ok installed" not in text:
            continue
        name = re.search(rb"^Package: (\S+)", text, re.MULTILINE)
        arch = re.search(rb"^Architecture: (\S+)", text, re.MULTILINE)
        assert name is not None and arch is not None
        for candidate in (name[1] + b".md5sums", name[1] + b":" + arch[1] + b".md5sums"):
            path = INFO / os.fsdecode(candidate)
            if path.is_file():
                # its first ~50 files, cut at a line's end
                info[os.fsdecode(candidate)] = path.read_bytes()[:4096].rpartition(b"\n")[0] + b"\n"
        kept.append(text)
        if len(kept) == 12:
            break
    return b"\n\n".join(kept) + b"\n\n", info


BASE_STATUS, BASE_INFO = _small_status()
BASE_MD5SUMS_NAME = max(BASE_INFO, key=lambda name: len(BASE_INFO[name]), default="")
BASE_INSTALLED = (
    INSTALLED.read_bytes()[:8192].rpartition(b"\n\n")[0] + b"\n\n" if (INSTALLED.is_file()) else b""
)


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("no answer within 10 s")


def guarded(call: Callable[[], object]) -> object:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        return call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _line_starts(data: bytes) -> list[int]:
    return [0] + [m.end() for m in re.finditer(rb"\n", data)][:2000]


def mutations(base: bytes) -> st.SearchStrategy[bytes]:
    """Real data with bytes overwritten (often at line starts, where the structure is), lines
    deleted or repeated, cut short or extended."""
    starts = _line_starts(base)
    position = st.one_of(
        st.integers(0, max(len(base) - 1, 0)),
        st.sampled_from(starts).flatmap(lambda h: st.integers(h, h + 12)),
    )
    token = st.one_of(
        st.binary(min_size=1, max_size=4),
        st.sampled_from(
            [b":", b"\n", b"\n\n", b" ", b"\t", b"\0", b"\xff", b"/", b"..", b"#", b"-", b"~"]
        ),
    )
    kinds = st.sampled_from(["put", "insert", "delete-line", "repeat-line"])
    edit = st.tuples(kinds, position, token)

    def apply(args: tuple[list[tuple[str, int, bytes]], int | None, bytes]) -> bytes:
        edits, cut, tail = args
        data = bytearray(base)
        for kind, at, value in edits:
            at = min(at, len(data))
            if kind == "put":
                data[at : at + len(value)] = value
            elif kind == "insert":
                data[at:at] = value
            else:
                start = data.rfind(b"\n", 0, at) + 1
                end = data.find(b"\n", at)
                end = len(data) if end < 0 else end + 1
                if kind == "delete-line":
                    del data[start:end]
                else:
                    data[start:start] = data[start:end] * 3
        if cut is not None:
            del data[cut:]
        return bytes(data) + tail

    return st.tuples(
        st.lists(edit, min_size=1, max_size=6),
        st.none() | st.integers(0, len(base)),
        st.binary(max_size=8),
    ).map(apply)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("fuzz")
    yield path
    shutil.rmtree(path)


def _dpkg_root(workdir: Path, status: bytes, info: dict[str, bytes]) -> Path:
    root = workdir / "dpkg-root"
    if root.exists():
        shutil.rmtree(root)
    (root / "var/lib/dpkg/info").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_bytes(status)
    for name, data in info.items():
        (root / "var/lib/dpkg/info" / name).write_bytes(data)
    return root


def _apk_root(workdir: Path, installed: bytes) -> Path:
    root = workdir / "apk-root"
    if root.exists():
        shutil.rmtree(root)
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_bytes(installed)
    return root


def _read(reader: object, root: Path) -> PackageDB | PkgDBError:
    with RootFS(root) as fs:
        assert reader.present(fs)  # type: ignore[attr-defined]
        try:
            return reader.read(fs)  # type: ignore[attr-defined, no-any-return]
        except PkgDBError as error:
            return error


def _check(result: PackageDB | PkgDBError, damaged: bool, base_packages: int) -> None:
    if isinstance(result, PkgDBError):
        return  # "cannot be used at all": said
    if damaged and not result.packages and not result.files:
        assert result.problems, "a damaged database read as empty, with no problem"
    if len(result.packages) < base_packages and isinstance(result, dpkg.DpkgDB):
        # a package lost to the damage still has its md5sums: said
        assert result.problems, "packages lost without a problem"


def test_base_databases_are_read_cleanly(workdir: Path) -> None:
    """The unmutated inputs: packages and files, and no problem, so any change is the fuzz's."""
    db = _read(dpkg, _dpkg_root(workdir, BASE_STATUS, BASE_INFO))
    assert isinstance(db, PackageDB) and len(db.packages) == 12 and len(db.files) > 100
    assert db.problems == ()
    db = _read(apk, _apk_root(workdir, BASE_INSTALLED))
    assert isinstance(db, PackageDB) and len(db.packages) >= 4 and len(db.files) > 20
    assert db.problems == ()


@FUZZ
@given(status=mutations(BASE_STATUS))
@example(status=b"")  # emptied
@example(status=b"\n")
@example(status=BASE_STATUS.split(b"\n\n", 1)[1])  # a stanza deleted: its md5sums stay
@example(status=BASE_STATUS.replace(b"install ok installed", b"deinstall ok config-files", 1))
def test_fuzz_dpkg_status(workdir: Path, status: bytes) -> None:
    RAN["dpkg status"] = RAN.get("dpkg status", 0) + 1
    result = guarded(lambda: _read(dpkg, _dpkg_root(workdir, status, BASE_INFO)))
    _check(result, status != BASE_STATUS, 12)  # type: ignore[arg-type]


@FUZZ
@given(md5sums=mutations(BASE_INFO.get(BASE_MD5SUMS_NAME, b"")))
def test_fuzz_dpkg_md5sums(workdir: Path, md5sums: bytes) -> None:
    RAN["dpkg md5sums"] = RAN.get("dpkg md5sums", 0) + 1
    info = dict(BASE_INFO, **{BASE_MD5SUMS_NAME: md5sums})
    result = guarded(lambda: _read(dpkg, _dpkg_root(workdir, BASE_STATUS, info)))
    _check(result, md5sums != BASE_INFO[BASE_MD5SUMS_NAME], 12)  # type: ignore[arg-type]
    if isinstance(result, PackageDB) and md5sums != BASE_INFO[BASE_MD5SUMS_NAME]:
        # the one damaged file's package lost or changed records, or a problem says so
        assert len(result.packages) == 12


@FUZZ
@given(installed=mutations(BASE_INSTALLED))
@example(installed=b"")
@example(installed=b"\n\n")
def test_fuzz_apk_installed(workdir: Path, installed: bytes) -> None:
    RAN["apk installed"] = RAN.get("apk installed", 0) + 1
    result = guarded(lambda: _read(apk, _apk_root(workdir, installed)))
    _check(result, installed != BASE_INSTALLED, 0)  # type: ignore[arg-type]


@SCAN
@given(
    status=mutations(BASE_STATUS),
    md5sums=mutations(BASE_INFO.get(BASE_MD5SUMS_NAME, b"")),
    installed=mutations(BASE_INSTALLED),
)
@example(status=BASE_STATUS, md5sums=b"0" * 32 + b"  usr/bin/a\0b\n", installed=BASE_INSTALLED)
def test_fuzz_whole_scan_never_passes_damage(
    workdir: Path, status: bytes, md5sums: bytes, installed: bytes
) -> None:
    """A scan of a root with damaged databases and none of their files: never complete and
    clean (exit 0), whatever the damage; never an exception."""
    RAN["scan"] = RAN.get("scan", 0) + 1
    root = _dpkg_root(workdir, status, dict(BASE_INFO, **{BASE_MD5SUMS_NAME: md5sums}))
    (root / "lib/apk/db").mkdir(parents=True)
    (root / "lib/apk/db/installed").write_bytes(installed)
    report = guarded(lambda: scanner.scan_root(root, checks=["448"]))
    assert isinstance(report, scanner.Report)
    assert report.findings or not report.complete


def test_zz_report_how_many_ran() -> None:
    print(f"\nmutated databases read: {RAN}")
