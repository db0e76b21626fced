"""pkgdb.rpm: real rpmdbs of all three formats, rpmbuild-made roots with rpm as referee, bad input."""

from __future__ import annotations

import io
import os
import shutil
import signal
import sqlite3
import stat
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from rpmbuild import RPM_DB, build_rpm, install_rpm

from pkgdb.records import DigestAlgorithm, InstalledFile, Verify
from pkgdb.rootfs import RootFS
from pkgdb.rpm import RpmDB, RpmDBError, _header, present, read
from pkgdb.rpm._package import RPMFILE_GHOST, Tag

# (fixture directory, file suffix, where the file goes in a root)
FORMATS = {
    "sqlite": (".rpmdb.sqlite", "var/lib/rpm/rpmdb.sqlite"),
    "bdb": (".Packages", "var/lib/rpm/Packages"),
    "ndb": (".Packages.db", "usr/lib/sysimage/rpm/Packages.db"),
}
FIXTURES = [
    ("sqlite", "amazonlinux2023"),
    ("sqlite", "rockylinux-9-htop-only"),
    ("sqlite", "fedora-36-tzdata-only"),
    ("sqlite", "fedora-38-two-pkgs"),
    ("bdb", "ubi-8.0-full"),
    ("bdb", "centos-8-htop-only"),
    ("bdb", "ubi7-created-tzdata-el8-only"),
    ("bdb", "libuuid-md5-trailing-zero"),
    ("bdb", "syft-dive-only"),
    ("bdb", "scalibr-epoch"),
    ("ndb", "sle15-bci"),
]
# PROVENANCE.md "EXPECTED": one sample file per fixture (path, size, sha256 hex).
SAMPLES = {
    "amazonlinux2023": ("etc/aliases", 1529, "a4c569569f893bc22fbe696c459f8fba0fe4565022637300b705b54a95c47bce"),
    "rockylinux-9-htop-only": ("usr/bin/htop", 344792, "196b745f0ca57116cbf4673756dd5d6c460d6112f76f68b7265adea21f634abe"),
    "fedora-36-tzdata-only": ("usr/share/licenses/tzdata/LICENSE", 252, "0613408568889f5739e5ae252b722a2659c02002839ad970a63dc5e9174b27cf"),
    "fedora-38-two-pkgs": ("usr/share/licenses/libgcc/COPYING", 18002, "231f7edcc7352d7734a96eef0b8030f77982678c516876fcb81e25b32d68564c"),
    "ubi-8.0-full": ("etc/aliases", 1518, "918bb2cfd8ff417b9e78d220d37f34033258469545e49c19ef3ae4247d905dfb"),
    "centos-8-htop-only": ("usr/bin/htop", 312048, "500cd1231f4286225c9db434f126b7b6e2a0496f495586c02a5d123e49dc7a51"),
    "ubi7-created-tzdata-el8-only": ("usr/share/licenses/tzdata/LICENSE", 252, "0613408568889f5739e5ae252b722a2659c02002839ad970a63dc5e9174b27cf"),
    "libuuid-md5-trailing-zero": ("usr/lib64/libuuid.so.1.3.0", 33496, "3c8f59a0e39cce53501045859f5c9a86b82fedd558a2f4110ab1823047b43745"),
    "syft-dive-only": ("usr/local/bin/dive", 12406784, "81d29f327ba23096b3c52ff6fe1c425641e618bc87b5c05ee377edc650afaa55"),
    "scalibr-epoch": ("usr/bin/hello.sh", 29, "eaf2957543077e93015b0b2e06ebe320ed568ef853245c7ebedf33c4e45cf40d"),
    "sle15-bci": ("etc/skel/.bash_history", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
}  # fmt: skip
_IDS = [f"{kind}-{name}" for kind, name in FIXTURES]


@pytest.fixture(autouse=True)
def no_hang() -> Iterator[None]:
    """No input may make the reader hang: every test here gets 60 s."""
    signal.alarm(60)
    yield
    signal.alarm(0)


def fixture_root(shared: Path, tmp_path: Path, kind: str, name: str) -> Path:
    """A root holding a COPY of one fixture DB (the fixtures are never opened for writing)."""
    suffix, dest = FORMATS[kind]
    root = tmp_path / "root"
    (root / dest).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shared / "rpm" / kind / f"{name}{suffix}", root / dest)
    return root


def read_root(root: Path) -> RpmDB:
    with RootFS(str(root)) as fs:
        return read(fs)


def evr_line(db: RpmDB) -> list[str]:
    return sorted(
        f"{p.name} {'' if p.epoch is None else f'{p.epoch}:'}{p.version}-{p.release} "
        f"{p.arch or '(none)'}"
        for p in db.packages
    )


@pytest.mark.parametrize(("kind", "name"), FIXTURES, ids=_IDS)
def test_fixture_package_set(shared_fixtures: Path, tmp_path: Path, kind: str, name: str) -> None:
    db = read_root(fixture_root(shared_fixtures, tmp_path, kind, name))
    expected = (shared_fixtures / "rpm" / kind / f"{name}.expected.txt").read_text().splitlines()
    assert evr_line(db) == expected
    assert db.problems == ()
    assert db.backend == kind and db.headers == len(expected)
    counts: dict[str, int] = {}
    for f in db.files:
        counts[f.package] = counts.get(f.package, 0) + 1
    assert all(p.file_count == counts.get(p.name, 0) for p in db.packages)


def parse_dump(text: str) -> dict[str, list[list[str]]]:
    """`rpm -qa --dump` sections: "name evr arch" -> [path size mtime digest mode ... symlink]."""
    sections: dict[str, list[list[str]]] = {}
    current: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("## package: "):
            current = sections.setdefault(line.split(" ")[2], [])
        elif line and not line.startswith("#"):
            current.append(line.split(" "))
    return sections


def skipped_by_header(root: Path, db: RpmDB) -> dict[tuple[str, bytes], str]:
    """(package, path) -> "ghost" for ghosts, "absent" for the file states rpm -V skips (not
    installed, net-shared), straight from the header tags."""
    from pkgdb.rpm import DATABASES

    backend = dict(DATABASES)[db.database]
    out: dict[tuple[str, bytes], str] = {}
    fd = os.open(root / os.fsdecode(db.database), os.O_RDONLY)
    try:
        for blob in backend.blobs(fd):
            assert not hasattr(blob, "message")
            h = _header.parse(blob.data)
            dirs, bases = h.strings(Tag.DIRNAMES) or (), h.strings(Tag.BASENAMES) or ()
            idx, flags = h.ints(Tag.DIRINDEXES) or (), h.ints(Tag.FILEFLAGS) or ()
            states = h.ints(Tag.FILESTATES) or (0,) * len(bases)
            name = (h.string(Tag.NAME) or b"").decode()
            for i, base in enumerate(bases):
                path = (dirs[idx[i]] + base).lstrip(b"/")
                if states[i] in (2, 3):
                    out[name, path] = "absent"
                elif flags[i] & RPMFILE_GHOST:
                    out[name, path] = "ghost"
    finally:
        os.close(fd)
    return out


def check_against_dump(
    records: list[InstalledFile],
    lines: list[list[str]],
    skipped: set[bytes],
    ghosts: frozenset[bytes] | set[bytes] = frozenset(),
) -> int:
    """Every dump line agrees with our record for its path; returns how many records matched.

    `skipped` paths have no record; `ghosts` have one without digest, verified for permissions.
    """
    by_path = {f.path: f for f in records}
    matched = 0
    for path_s, size, _mtime, digest, mode_s, _o, _g, isconfig, _doc, _rdev, link in lines:
        path = os.fsencode(path_s).lstrip(b"/")
        mode = int(mode_s, 8)
        record = by_path.get(path)
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)) or path in skipped:
            assert record is None, path
            continue
        assert record is not None, path
        assert (record.mode, record.size, record.is_config) == (mode, int(size), isconfig == "1")
        if path in ghosts:
            assert (record.digest, record.verify, record.missing_ok) == (
                None,
                Verify.PERMISSIONS,
                True,
            )
        elif stat.S_ISLNK(mode):
            assert (record.link_target, record.digest) == (os.fsencode(link), None)
        else:
            assert record.link_target is None
            assert record.digest is not None and record.digest.hex() == digest
            assert (
                record.algorithm
                is {32: DigestAlgorithm.MD5, 64: DigestAlgorithm.SHA256}[len(digest)]
            )
        matched += 1
    assert matched == len(records)
    return matched


@pytest.mark.parametrize(("kind", "name"), FIXTURES, ids=_IDS)
def test_fixture_files_match_rpm_dump(
    shared_fixtures: Path, tmp_path: Path, kind: str, name: str
) -> None:
    root = fixture_root(shared_fixtures, tmp_path, kind, name)
    db = read_root(root)
    skipped = skipped_by_header(root, db)
    dump = parse_dump((shared_fixtures / "rpm" / kind / f"{name}.files.txt").read_text())
    assert dump
    for package, lines in dump.items():
        records = [f for f in db.files if f.package == package]
        paths = {p for (n, p), why in skipped.items() if n == package and why == "absent"}
        ghosts = {p for (n, p), why in skipped.items() if n == package and why == "ghost"}
        assert check_against_dump(records, lines, paths, ghosts) == len(records)
    path, size, digest = SAMPLES[name]
    sample = [f for f in db.files if f.path == path.encode()]
    assert sample and sample[0].size == size and sample[0].digest == bytes.fromhex(digest)


def test_fixture_skips_are_counted(shared_fixtures: Path, tmp_path: Path) -> None:
    # UBI 8 images install with tsflags=nodocs: docs have FILESTATES 2 "not installed"
    db = read_root(fixture_root(shared_fixtures, tmp_path, "bdb", "ubi-8.0-full"))
    assert db.skipped.not_normal_state > 0 and db.skipped.ghost > 0 and db.skipped.directory > 0
    assert not any(f.path.startswith(b"usr/share/doc/bash/") for f in db.files)
    config = {f.path for f in db.files if f.is_config}
    assert b"etc/aliases" in config and b"usr/bin/bash" not in config
    gpg = [p for p in db.packages if p.name == "gpg-pubkey"]
    assert len(gpg) == 2 and all(p.arch is None and p.file_count == 0 for p in gpg)


# --- which database -------------------------------------------------------------------------


def test_prefers_sqlite_and_names_the_other(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "bdb", "centos-8-htop-only")
    sysimage = root / "usr/lib/sysimage/rpm"
    sysimage.mkdir(parents=True)
    shutil.copyfile(
        shared_fixtures / "rpm/sqlite/rockylinux-9-htop-only.rpmdb.sqlite",
        sysimage / "rpmdb.sqlite",
    )
    db = read_root(root)
    assert (db.backend, db.database) == ("sqlite", b"usr/lib/sysimage/rpm/rpmdb.sqlite")
    assert evr_line(db) == ["htop 3.2.1-1.el9 x86_64"]
    [note] = db.problems
    assert note.source == b"var/lib/rpm/Packages" and "not read" in note.message


def test_symlinked_dbpath_is_one_database(shared_fixtures: Path, tmp_path: Path) -> None:
    # Fedora / SUSE: var/lib/rpm -> ../../usr/lib/sysimage/rpm: two names, one file
    root = fixture_root(shared_fixtures, tmp_path, "ndb", "sle15-bci")
    (root / "var/lib").mkdir(parents=True)
    (root / "var/lib/rpm").symlink_to("../../usr/lib/sysimage/rpm")
    db = read_root(root)
    assert db.problems == () and len(db.packages) == 36


def test_unusable_preferred_db_falls_back(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "bdb", "scalibr-epoch")
    (root / "var/lib/rpm/rpmdb.sqlite").write_bytes(b"garbage" * 100)
    db = read_root(root)
    assert db.backend == "bdb" and evr_line(db) == ["hello 1:0.0.1-rls x86_64"]
    [problem] = db.problems
    assert problem.source == b"var/lib/rpm/rpmdb.sqlite" and "not an SQLite" in problem.message


def test_no_database(tmp_path: Path) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    with RootFS(str(tmp_path)) as fs:
        assert not present(fs)
        with pytest.raises(RpmDBError, match="no rpm database found"):
            read(fs)


def test_db_symlink_out_of_root_is_not_followed(shared_fixtures: Path, tmp_path: Path) -> None:
    (tmp_path / "var/lib/rpm").mkdir(parents=True)
    target = shared_fixtures / "rpm/sqlite/amazonlinux2023.rpmdb.sqlite"
    (tmp_path / "var/lib/rpm/rpmdb.sqlite").symlink_to(target)
    (tmp_path / "usr/lib/sysimage").mkdir(parents=True)
    (tmp_path / "usr/lib/sysimage/rpm").symlink_to(target.parent)  # absolute: means <root>/...
    with RootFS(str(tmp_path)) as fs:
        # present, since a symlink stands where a database belongs: unread, so a problem
        assert present(fs) is True
        with pytest.raises(RpmDBError, match="not a regular file"):
            read(fs)


def test_wal_beside_sqlite_is_reported_and_nothing_is_written(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "sqlite", "fedora-38-two-pkgs")
    directory = root / "var/lib/rpm"
    (directory / "rpmdb.sqlite-wal").write_bytes(b"\0" * 100)
    before = sorted(os.listdir(directory))
    db = read_root(root)
    assert len(db.packages) == 2
    assert [p.source for p in db.problems] == [b"var/lib/rpm/rpmdb.sqlite-wal"]
    assert sorted(os.listdir(directory)) == before  # no -shm, no journal


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(FORMATS))
@pytest.mark.parametrize(
    "content", [b"", b"\x00" * 4096, os.urandom(70000)], ids=["empty", "zeros", "random"]
)
def test_garbage_database_is_an_error_naming_it(tmp_path: Path, kind: str, content: bytes) -> None:
    dest = FORMATS[kind][1]
    (tmp_path / dest).parent.mkdir(parents=True)
    (tmp_path / dest).write_bytes(content)
    with pytest.raises(RpmDBError, match=dest.replace(".", r"\.")):
        read_root(tmp_path)


def test_truncated_sqlite(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "sqlite", "amazonlinux2023")
    path = root / "var/lib/rpm/rpmdb.sqlite"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    try:
        db = read_root(root)
    except RpmDBError as error:
        assert "var/lib/rpm/rpmdb.sqlite" in str(error)
        return
    assert db.problems and all(p.source == b"var/lib/rpm/rpmdb.sqlite" for p in db.problems)
    assert len(db.packages) < 103


def test_truncated_bdb(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "bdb", "ubi-8.0-full")
    path = root / "var/lib/rpm/Packages"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2 + 1234])
    db = read_root(root)
    assert 0 < len(db.packages) < 101
    assert all(p.source == b"var/lib/rpm/Packages" for p in db.problems)
    messages = [p.message for p in db.problems]
    assert "truncated" in messages[0]
    assert any(m.startswith("header ") and "beyond the end of the file" in m for m in messages)


def _bdb_page(data: bytearray, pgno: int) -> int:
    return pgno * int(struct.unpack_from("<I", data, 20)[0])


def test_bdb_bucket_page_loop(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "bdb", "ubi-8.0-full")
    path = root / "var/lib/rpm/Packages"
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, _bdb_page(data, 1) + 16, 1)  # bucket 0's page: next = itself
    path.write_bytes(data)
    db = read_root(root)
    assert any("reached twice (loop)" in p.message for p in db.problems)
    assert len(db.packages) == 101  # every header was on pages 1 and 2 and was read once


def test_bdb_overflow_page_loop(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "bdb", "ubi-8.0-full")
    path = root / "var/lib/rpm/Packages"
    data = bytearray(path.read_bytes())
    pgno = next(
        n
        for n in range(1, 1117)
        if data[_bdb_page(data, n) + 25] == 7
        and struct.unpack_from("<I", data, _bdb_page(data, n) + 16)[0]
    )
    struct.pack_into("<I", data, _bdb_page(data, pgno) + 16, pgno)
    path.write_bytes(data)
    db = read_root(root)
    [loop] = [p for p in db.problems if "twice (loop)" in p.message]
    assert loop.message.startswith("header ") and len(db.packages) == 100


def test_bdb_hash_version_7_is_refused(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "bdb", "scalibr-epoch")
    path = root / "var/lib/rpm/Packages"
    data = bytearray(path.read_bytes())
    struct.pack_into("<I", data, 16, 7)
    path.write_bytes(data)
    with pytest.raises(
        RpmDBError, match=r"var/lib/rpm/Packages: .*unsupported Berkeley DB hash version 7"
    ):
        read_root(root)


def test_truncated_ndb_and_bad_blob(shared_fixtures: Path, tmp_path: Path) -> None:
    root = fixture_root(shared_fixtures, tmp_path, "ndb", "sle15-bci")
    path = root / "usr/lib/sysimage/rpm/Packages.db"
    data = bytearray(path.read_bytes())
    path.write_bytes(data[: len(data) * 2 // 3])
    db = read_root(root)
    assert 0 < len(db.packages) < 36 and all(
        p.source == path.relative_to(root).as_posix().encode() for p in db.problems
    )
    assert any("beyond the end of file" in p.message for p in db.problems)
    # one blob's header data damaged: that header is a problem, the 35 others are read
    slot = struct.unpack_from("<4sIII", data, 32)
    struct.pack_into(">I", data, slot[2] * 16 + 16, 0xFFFF0000)  # its `il`
    path.write_bytes(data)
    db = read_root(root)
    assert len(db.packages) == 35
    assert any(p.message.startswith(f"header {slot[1]}: unreadable header") for p in db.problems)


# --- the header parser ----------------------------------------------------------------------


def make_blob(entries: list[tuple[int, int, int, int]], data: bytes) -> bytes:
    index = b"".join(struct.pack(">IIII", *e) for e in entries)
    return struct.pack(">II", len(entries), len(data)) + index + data


@pytest.mark.parametrize(
    ("entries", "data", "message"),
    [
        ([], b"", "index entry count 0"),
        ([(1000, 6, 10, 1)], b"abc\0", "offset beyond"),
        ([(1000, 4, 0, 2)], b"\0\0\0\1", "overrun"),
        ([(1000, 4, 2, 1)], b"\0" * 8, "not aligned"),
        ([(1000, 5, 0, 1)], b"\0" * 4, "overrun"),
        ([(1000, 6, 0, 2)], b"a\0b\0", "count 1"),
        ([(1000, 12, 0, 1)], b"a\0", "unknown data type"),
        ([(1000, 8, 0, 0)], b"a\0", "count outside"),
        ([(1000, 8, 0, 0x7FFFFFFF)], b"a\0", "count outside"),
        ([(1000, 7, 1, 4)], b"abcd", "overrun"),
    ],
)
def test_header_rejects_out_of_range(
    entries: list[tuple[int, int, int, int]], data: bytes, message: str
) -> None:
    with pytest.raises(_header.HeaderError, match=message):
        _header.parse(make_blob(entries, data))


def test_header_bounds_on_the_preamble() -> None:
    with pytest.raises(_header.HeaderError, match="shorter"):
        _header.parse(b"\0\0\0")
    with pytest.raises(_header.HeaderError, match="outside 1..65535"):
        _header.parse(struct.pack(">II", 0x10000000, 0))
    with pytest.raises(_header.HeaderError, match="exceeds"):
        _header.parse(struct.pack(">II", 1, 0xFFFFFFFF) + b"\0" * 16)
    good = make_blob([(1000, 6, 0, 1)], b"a\0")
    with pytest.raises(_header.HeaderError, match="blob is"):
        _header.parse(good + b"\0")


def test_header_unterminated_strings_raise_on_use() -> None:
    header = _header.parse(make_blob([(1117, 8, 0, 3)], b"a\0b\0c"))
    with pytest.raises(_header.HeaderError, match="only 2 terminated"):
        header.strings(1117)


def test_header_types_and_last_entry_wins() -> None:
    data = (
        b"name\0" + b"\0\0\0" + struct.pack(">QQ", 1, 1 << 40) + b"x\0y\0" + b"\x00\x02" + b"\xff"
    )
    header = _header.parse(
        make_blob(
            [
                (1000, 6, 0, 1),
                (5008, 5, 8, 2),
                (1117, 8, 24, 2),
                (1029, 1, 28, 3),
                (1000, 9, 24, 1),
            ],
            data,
        )
    )
    assert header.ints(5008) == (1, 1 << 40)
    assert header.strings(1117) == (b"x", b"y")
    assert header.ints(1029) == (0, 2, 255)  # CHAR: unsigned; 255 is rpm's -1 "missing"
    assert header.string(1000) == b"x"  # the later (dribble) entry replaced the first
    assert header.ints(9999) is None and 9999 not in header


def test_rpmfile_cannot_parse_rpmdb_blobs_safely(shared_fixtures: Path) -> None:
    """The measurement behind _header.py's docstring: rpmfile on real rpmdb blobs."""
    import rpmfile.headers  # type: ignore[import-untyped]

    connection = sqlite3.connect(
        f"file:{shared_fixtures}/rpm/sqlite/rockylinux-9-htop-only.rpmdb.sqlite?mode=ro&immutable=1",
        uri=True,
    )
    [(blob,)] = connection.execute("SELECT blob FROM Packages").fetchall()
    connection.close()
    with pytest.raises(AssertionError):  # no magic: it latches onto a stray 0x8e and asserts
        rpmfile.headers._readheader(io.BytesIO(blob), False)
    magic = b"\x8e\xad\xe8\x01\0\0\0\0"
    parsed = rpmfile.headers._readheader(io.BytesIO(magic + blob), False)[1]
    assert (
        parsed["name"] == b"htop" and parsed["filestates"] == "could not extract 1"
    )  # no CHAR type
    il = struct.unpack_from(">I", blob)[0]
    entries = [struct.unpack_from(">IIII", blob, 8 + 16 * i) for i in range(il)]
    i = next(n for n, e in enumerate(entries) if e[0] == Tag.BASENAMES)
    damaged = bytearray(blob)
    struct.pack_into(">I", damaged, 8 + 16 * i + 12, entries[i][3] + 100000)
    silently_wrong = rpmfile.headers._readheader(io.BytesIO(magic + bytes(damaged)), False)[1]
    assert len(silently_wrong["basenames"]) != entries[i][3] + 100000  # no error raised
    with pytest.raises(_header.HeaderError):  # ours refuses the same blob
        _header.parse(bytes(damaged)).strings(Tag.BASENAMES)


# --- real rpm roots built by rpmbuild, rpm as referee ----------------------------------------

SPEC = """\
Name: scanroot-test
Version: 1.2
Release: 3
Epoch: 2
Summary: scan-root test package
License: MIT
BuildArch: x86_64
%description
scan-root test package
%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc/scanroot %{buildroot}/usr/share/doc/scanroot-test
mkdir -p %{buildroot}/var/lib/scanroot/empty
cp /bin/true %{buildroot}/usr/bin/sr-true
echo "key=value" > %{buildroot}/etc/scanroot/sr.conf
ln -s sr-true %{buildroot}/usr/bin/sr-link
echo doc > %{buildroot}/usr/share/doc/scanroot-test/README
touch %{buildroot}/var/lib/scanroot/state
%files
/usr/bin/sr-true
/usr/bin/sr-link
%config(noreplace) /etc/scanroot/sr.conf
%dir /etc/scanroot
%dir /var/lib/scanroot/empty
%ghost /var/lib/scanroot/state
%doc /usr/share/doc/scanroot-test/README
"""


def need(tool: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")


@pytest.fixture(scope="module")
def built_rpm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_rpm(SPEC, tmp_path_factory.mktemp("rpmbuild"))


install = install_rpm


def referee_dump(root: Path, *options: str) -> dict[str, list[list[str]]]:
    """`rpm -qa --dump`, one section per package name."""
    out = subprocess.run(
        ["rpm", "--root", str(root), *RPM_DB, *options, "-qa", "--qf", "## package: %{NAME}\\n", "--dump"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return parse_dump(out)


def referee_list(root: Path, *options: str) -> list[str]:
    fmt = "%{NAME} %|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE} %{ARCH}\\n"
    out = subprocess.run(
        ["rpm", "--root", str(root), *RPM_DB, *options, "-qa", "--qf", fmt],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    return sorted(out.splitlines())


def test_rpmbuild_root_matches_rpm(built_rpm: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, built_rpm)
    db = read_root(root)
    assert (db.backend, db.problems) == ("sqlite", ())
    assert evr_line(db) == referee_list(root) == ["scanroot-test 2:1.2-3 x86_64"]
    dump = referee_dump(root)
    check_against_dump(list(db.files), dump["scanroot-test"], set(), {b"var/lib/scanroot/state"})
    paths = {f.path: f for f in db.files}
    ghost = paths[b"var/lib/scanroot/state"]  # %ghost: permissions only, absence is no finding
    assert (ghost.digest, ghost.verify, ghost.missing_ok) == (None, Verify.PERMISSIONS, True)
    assert b"etc/scanroot" not in paths and b"var/lib/scanroot/empty" not in paths  # %dir
    assert paths[b"etc/scanroot/sr.conf"].is_config
    link = paths[b"usr/bin/sr-link"]
    assert stat.S_ISLNK(link.mode or 0) and link.link_target == b"sr-true" and link.digest is None
    elf = paths[b"usr/bin/sr-true"]
    assert elf.digest is not None and elf.size == os.path.getsize("/bin/true")
    assert elf.version == "2:1.2-3" and elf.algorithm is DigestAlgorithm.SHA256
    assert db.skipped.ghost == 1 and db.skipped.directory >= 2
    with RootFS(str(root)) as fs:
        assert present(fs)


def test_rpmbuild_root_agrees_with_rpmfile(built_rpm: Path, tmp_path: Path) -> None:
    import rpmfile

    root = tmp_path / "root"
    install(root, built_rpm)
    db = read_root(root)
    with rpmfile.open(str(built_rpm)) as package:
        headers = package.headers
        names = [
            (d + b).lstrip(b"/")
            for d, b in zip(
                (headers["dirnames"][i] for i in headers["dirindexes"]), headers["basenames"]
            )
        ]
        digests = dict(zip(names, headers["filemd5s"]))
        assert headers["name"].decode() == db.packages[0].name
        assert headers["serial"] == db.packages[0].epoch
    for f in db.files:
        if f.digest is not None:
            assert digests[f.path] == f.digest.hex().encode()
    assert {f.path for f in db.files} <= set(names)


def test_excluded_docs_have_not_installed_state(built_rpm: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    install(root, built_rpm, "--excludedocs")
    db = read_root(root)
    assert b"usr/share/doc/scanroot-test/README" not in {f.path for f in db.files}
    assert db.skipped.not_normal_state == 1  # FILESTATES 2: not installed
    assert not (root / "usr/share/doc/scanroot-test/README").exists()


def sqlite_to_bdb(sources: list[Path], packages: Path, big_endian: bool) -> None:
    """A real Berkeley DB hash file written by libdb's db_load with rpm's header blobs.

    Debian's rpm has only `bdb_ro` (it cannot write bdb), so libdb itself writes the file, in
    either byte order; rpm's bdb_ro is then the referee. Key = header number in the DB's order;
    the headers of several sqlite DBs are renumbered one after another.
    """
    rows: list[bytes] = []
    for source in sources:
        connection = sqlite3.connect(f"file:{source}?mode=ro&immutable=1", uri=True)
        rows += [blob for (blob,) in connection.execute("SELECT blob FROM Packages ORDER BY hnum")]
        connection.close()
    order = ">" if big_endian else "<"
    lines = [
        "VERSION=3",
        "format=bytevalue",
        "type=hash",
        f"db_lorder={4321 if big_endian else 1234}",
        "HEADER=END",
    ]
    for number, blob in enumerate(rows, start=1):
        lines += [" " + struct.pack(order + "I", number).hex(), " " + blob.hex()]
    lines.append("DATA=END")
    packages.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["db5.3_load", str(packages)],
        input="\n".join(lines) + "\n",
        text=True,
        check=True,
        capture_output=True,
    )


@pytest.mark.parametrize("big_endian", [False, True], ids=["le", "be"])
def test_libdb_written_bdb_both_byte_orders(
    built_rpm: Path, shared_fixtures: Path, tmp_path: Path, big_endian: bool
) -> None:
    need("db5.3_load")
    built = tmp_path / "built"
    install(built, built_rpm)
    from_sqlite = read_root(built)
    # the realistic amazonlinux2023 headers (103, multi-page overflow items) plus our package
    root = tmp_path / "root"
    sqlite_to_bdb(
        [
            shared_fixtures / "rpm/sqlite/amazonlinux2023.rpmdb.sqlite",
            built / "var/lib/rpm/rpmdb.sqlite",
        ],
        root / "var/lib/rpm/Packages",
        big_endian,
    )
    magic = (root / "var/lib/rpm/Packages").read_bytes()[12:16]
    assert magic == (b"\x00\x06\x15\x61" if big_endian else b"\x61\x15\x06\x00")
    db = read_root(root)
    assert db.backend == "bdb" and db.problems == ()
    bdb_ro = ("--define", "_db_backend bdb_ro")
    assert evr_line(db) == referee_list(root, *bdb_ro) and len(db.packages) == 104
    ours = [f for f in db.files if f.package == "scanroot-test"]
    dump = referee_dump(root, *bdb_ro)
    check_against_dump(ours, dump["scanroot-test"], set(), {b"var/lib/scanroot/state"})
    assert tuple(ours) == from_sqlite.files


def test_libdb_empty_bucket_page(built_rpm: Path, tmp_path: Path) -> None:
    """libdb leaves an unused bucket's page all zeros; libdb reads it as empty, and so do we.

    rpm 4.18's bdb_ro refuses this whole file ("bdb_ro error reading Packages database").
    """
    need("db5.3_load")
    built = tmp_path / "built"
    install(built, built_rpm)
    root = tmp_path / "root"
    sqlite_to_bdb([built / "var/lib/rpm/rpmdb.sqlite"], root / "var/lib/rpm/Packages", False)
    data = (root / "var/lib/rpm/Packages").read_bytes()
    assert not any(data[4096 : 4096 + 26])  # bucket 0's page 1 was never written
    db = read_root(root)
    assert db.problems == () and evr_line(db) == ["scanroot-test 2:1.2-3 x86_64"]


@pytest.mark.parametrize("name", [n for k, n in FIXTURES if k == "sqlite"])
def test_sqlite_without_proc_reads_the_same(
    shared_fixtures: Path, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without /proc the file's bytes are handed to SQLite: rpm's WAL-mode databases too."""
    from pkgdb.rpm import _sqlite

    root = fixture_root(shared_fixtures, tmp_path, "sqlite", name)
    expected = read_root(root)
    assert (root / "var/lib/rpm/rpmdb.sqlite").read_bytes()[18:20] == b"\2\2"  # WAL mode
    monkeypatch.setattr(_sqlite, "_same_file", lambda a, b: False)
    db = read_root(root)
    assert (db.packages, db.files, db.problems) == (
        expected.packages,
        expected.files,
        expected.problems,
    )


def test_sqlite_schema_with_undecodable_bytes_is_refused(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    """SQLite's error quotes the damaged schema; Python could not decode it (a crash, found by
    tests/test_pkgdb_rpm_fuzz.py): it is a database that cannot be read."""
    root = fixture_root(shared_fixtures, tmp_path, "sqlite", "rockylinux-9-htop-only")
    path = root / "var/lib/rpm/rpmdb.sqlite"
    data = bytearray(path.read_bytes())
    data[data.rfind(b"CREATE INDEX 'Basenames_hnum_idx'") + 5] = 0xAE
    path.write_bytes(bytes(data))
    with pytest.raises(RpmDBError, match="damaged schema"):
        read_root(root)
