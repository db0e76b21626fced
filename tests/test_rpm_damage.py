"""Damaged rpm databases are problems, never a valid-looking read: Berkeley DB pages that read as
empty, out-of-range file values, a renamed BASENAMES tag, a header that fails its own digest.

Every input is a real fixture (../shared/fixtures/pkgdb/rpm, copied) damaged here."""

from __future__ import annotations

import os
import shutil
import sqlite3
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import scanner
from pkgdb import RootFS
from pkgdb.rpm import RpmDB, _bdb, read
from pkgdb.rpm._source import HeaderBlob

SQLITE = ("sqlite/rockylinux-9-htop-only.rpmdb.sqlite", "var/lib/rpm/rpmdb.sqlite")
BDB = ("bdb/centos-8-htop-only.Packages", "var/lib/rpm/Packages")

FILEMODES, FILEFLAGS, FILESTATES, BASENAMES = 1030, 1037, 1029, 1117
SHA1HEADER, SHA256HEADER = 269, 273


def copy_fixture(shared: Path, tmp_path: Path, which: tuple[str, str]) -> Path:
    root = tmp_path / "root"
    (root / which[1]).parent.mkdir(parents=True)
    shutil.copyfile(shared / "rpm" / which[0], root / which[1])
    return root


def read_root(root: Path) -> RpmDB:
    with RootFS(root) as fs:
        return read(fs)


def messages(db: RpmDB) -> str:
    return "\n".join(p.message for p in db.problems)


# --- header edits ---------------------------------------------------------------------------


def _entries(blob: bytes) -> dict[int, tuple[int, int, int, int]]:
    """tag -> (position of its index entry, type, data offset, count)."""
    il = struct.unpack_from(">I", blob)[0]
    out = {}
    for i in range(il):
        tag, type_, offset, count = struct.unpack_from(">IIII", blob, 8 + 16 * i)
        out[tag] = (8 + 16 * i, type_, offset, count)
    return out


def rename_tag(old: int, new: int) -> Callable[[bytes], bytes]:
    def edit(blob: bytes) -> bytes:
        data = bytearray(blob)
        struct.pack_into(">I", data, _entries(blob)[old][0], new)
        return bytes(data)

    return edit


def set_ints(tag: int, value: Callable[[int], int]) -> Callable[[bytes], bytes]:
    """Every value of an integer tag replaced by value(old)."""

    def edit(blob: bytes) -> bytes:
        data = bytearray(blob)
        il = struct.unpack_from(">I", blob)[0]
        _, type_, offset, count = _entries(blob)[tag]
        code, size = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4)}[type_]
        at = 8 + 16 * il + offset
        for i in range(count):
            old = struct.unpack_from(">" + code, data, at + i * size)[0]
            struct.pack_into(">" + code, data, at + i * size, value(old))
        return bytes(data)

    return edit


def without_digests(edit: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """`edit`, then the digest tags renamed away: only the structural checks can see it."""
    return lambda blob: rename_tag(SHA1HEADER, 9269)(rename_tag(SHA256HEADER, 9273)(edit(blob)))


def flip_region_byte(blob: bytes) -> bytes:
    """One hex digit of the first file digest changed: structurally valid, digest broken."""
    il = struct.unpack_from(">I", blob)[0]
    _, _, offset, _ = _entries(blob)[1035]  # FILEDIGESTS
    at = 8 + 16 * il + offset
    while blob[at] == 0:  # the first regular file's digest (directories have "")
        at += 1
    data = bytearray(blob)
    data[at] = ord("0") if data[at] != ord("0") else ord("1")
    return bytes(data)


def damage_sqlite(root: Path, edit: Callable[[bytes], bytes]) -> None:
    connection = sqlite3.connect(root / SQLITE[1])
    try:
        [(number, blob)] = connection.execute("SELECT hnum, blob FROM Packages").fetchall()
        connection.execute("UPDATE Packages SET blob = ? WHERE hnum = ?", (edit(blob), number))
        connection.commit()
    finally:
        connection.close()


def damage_bdb(root: Path, edit: Callable[[bytes], bytes]) -> None:
    """Rewrite the one header in place, through its chain of overflow pages."""
    path = root / BDB[1]
    data = bytearray(path.read_bytes())
    fd = os.open(path, os.O_RDONLY)
    try:
        [blob] = [b.data for b in _bdb.blobs(fd) if isinstance(b, HeaderBlob)]
    finally:
        os.close(fd)
    new = edit(blob)
    assert len(new) == len(blob)
    page_size = struct.unpack_from("<I", data, 20)[0]
    pgno = data.find(blob[:64]) // page_size
    done = 0
    for _ in range(len(data) // page_size):  # bounded walk of the chain
        _, _, next_pgno, _, used = struct.unpack_from("<8xIIIHH", data, pgno * page_size)
        start = pgno * page_size + 26
        data[start : start + used] = new[done : done + used]
        done += used
        if done == len(new):
            break
        pgno = next_pgno
    assert done == len(new)
    path.write_bytes(bytes(data))


BACKENDS = {"sqlite": (SQLITE, damage_sqlite), "bdb": (BDB, damage_bdb)}


def damaged(shared: Path, tmp_path: Path, backend: str, edit: Callable[[bytes], bytes]) -> Path:
    which, damage = BACKENDS[backend]
    root = copy_fixture(shared, tmp_path, which)
    damage(root, edit)
    return root


CASES = {
    # the cases: the package was kept with 0 files and no problem
    "basenames-renamed": (rename_tag(BASENAMES, 1199), "no BASENAMES"),
    "filemodes-out-of-range": (set_ints(FILEMODES, lambda m: 0xF000 | m & 0o7777), "file type"),
    "fileflags-unknown-bits": (set_ints(FILEFLAGS, lambda f: f | 1 << 20), "FILEFLAGS bits"),
    "filestates-out-of-range": (set_ints(FILESTATES, lambda _: 7), "FILESTATES values"),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES)
def test_out_of_range_file_values_are_problems(
    shared_fixtures: Path, tmp_path: Path, backend: str, case: str
) -> None:
    edit, expected = CASES[case]
    db = read_root(damaged(shared_fixtures, tmp_path, backend, without_digests(edit)))
    assert [p.name for p in db.packages] == ["htop"]
    assert expected in messages(db)
    assert "SHA" not in messages(db)  # the structural check alone found it


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "edit",
    [
        flip_region_byte,
        rename_tag(BASENAMES, 1199),
        set_ints(FILEFLAGS, lambda _: 1 << 6),  # every file made %ghost: valid, but not so
        set_ints(FILEMODES, lambda m: m & ~0o111),  # execute bits dropped: valid values
    ],
    ids=["digest-hex", "basenames-renamed", "all-ghost", "modes-changed"],
)
def test_header_digest_catches_any_change_in_the_region(
    shared_fixtures: Path, tmp_path: Path, backend: str, edit: Callable[[bytes], bytes]
) -> None:
    root = damaged(shared_fixtures, tmp_path, backend, edit)
    db = read_root(root)
    assert "SHA256HEADER does not match the immutable header region" in messages(db)
    report = scanner.scan_root(root, checks=["448"])
    assert not report.complete


@pytest.mark.parametrize("backend", BACKENDS)
def test_sha1_alone_is_checked_too(shared_fixtures: Path, tmp_path: Path, backend: str) -> None:
    edit = lambda blob: rename_tag(SHA256HEADER, 9273)(flip_region_byte(blob))  # noqa: E731
    db = read_root(damaged(shared_fixtures, tmp_path, backend, edit))
    assert "SHA1HEADER does not match" in messages(db)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dribble_change_outside_the_region_is_not_a_digest_problem(
    shared_fixtures: Path, tmp_path: Path, backend: str
) -> None:
    """FILESTATES is written at install, after the region: rpm's digest does not cover it."""
    db = read_root(damaged(shared_fixtures, tmp_path, backend, set_ints(FILESTATES, lambda _: 0)))
    assert db.problems == () and len(db.files) > 0


def test_intact_fixtures_pass_their_digests(shared_fixtures: Path, tmp_path: Path) -> None:
    for kind, dest in (("sqlite", SQLITE[1]), ("bdb", BDB[1]), ("ndb", "var/lib/rpm/x")):
        for fixture in sorted((shared_fixtures / "rpm" / kind).glob("*.*")):
            if fixture.suffix in (".txt", ".csv"):
                continue
            where = {"ndb": "usr/lib/sysimage/rpm/Packages.db"}.get(kind, dest)
            root = tmp_path / fixture.name
            (root / where).parent.mkdir(parents=True)
            shutil.copyfile(fixture, root / where)
            db = read_root(root)
            assert not [p for p in db.problems if "SHA" in p.message], fixture.name


# --- Berkeley DB pages ----------------------------------------------------------------------


def _bdb_root(shared: Path, tmp_path: Path, change: Callable[[bytearray], None]) -> RpmDB:
    root = copy_fixture(shared, tmp_path, BDB)
    path = root / BDB[1]
    data = bytearray(path.read_bytes())
    change(data)
    path.write_bytes(bytes(data))
    return read_root(root)


def _zero_hash_pages(data: bytearray) -> None:
    page_size = struct.unpack_from("<I", data, 20)[0]
    for pgno in range(1, len(data) // page_size):
        if data[pgno * page_size + 25] == 13:  # P_HASH: zeroed, it reads as an empty bucket
            data[pgno * page_size : (pgno + 1) * page_size] = bytes(page_size)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: struct.pack_into("<I", d, 20, 512), "counts 2 records"),  # page size
        (_zero_hash_pages, "counts 2 records"),
        (lambda d: d.extend(b"\0" * 100), "not a whole number"),
    ],
    ids=["page-size", "zeroed-buckets", "misaligned-size"],
)
def test_bdb_pages_that_read_as_empty_are_problems(
    shared_fixtures: Path, tmp_path: Path, change: Callable[[bytearray], None], expected: str
) -> None:
    db = _bdb_root(shared_fixtures, tmp_path, change)
    assert expected in messages(db)


def test_bdb_key_count_damage_alone_is_a_problem(shared_fixtures: Path, tmp_path: Path) -> None:
    db = _bdb_root(shared_fixtures, tmp_path, lambda d: struct.pack_into("<I", d, 88, 3))
    assert [p.name for p in db.packages] == ["htop"]
    assert "counts 3 records, the bucket pages hold 2" in messages(db)


def _set_header_key(data: bytearray, number: int, new: int) -> None:
    """The hash item whose key is header `number` gets key `new` (pages parsed, not searched)."""
    page_size = struct.unpack_from("<I", data, 20)[0]
    for pgno in range(1, len(data) // page_size):
        base = pgno * page_size
        if data[base + 25] != 13:  # P_HASH
            continue
        entries = struct.unpack_from("<H", data, base + 20)[0]
        offsets = struct.unpack_from(f"<{entries}H", data, base + 26)
        for key_off in offsets[::2]:
            if struct.unpack_from("<I", data, base + key_off + 1)[0] == number:
                struct.pack_into("<I", data, base + key_off + 1, new)
                return
    raise AssertionError(f"no key {number}")


def test_bdb_header_key_read_as_the_counter_is_a_problem(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    db = _bdb_root(shared_fixtures, tmp_path, lambda d: _set_header_key(d, 1, 0))
    assert db.packages == ()
    assert "key 0 is not rpm's one 4-byte counter" in messages(db)


def test_bdb_header_number_above_the_counter_is_a_problem(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    db = _bdb_root(shared_fixtures, tmp_path, lambda d: _set_header_key(d, 1, 7))
    assert "header 7 is above rpm's counter 1" in messages(db)


def test_bdb_metadata_without_bucket_pages_is_a_problem(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    """Key count, max bucket and spares zeroed: it would read as a valid empty database."""

    def zero(data: bytearray) -> None:
        data[72:224] = bytes(152)

    db = _bdb_root(shared_fixtures, tmp_path, zero)
    assert db.packages == ()
    assert "bucket 0 maps to page 0" in messages(db)


def test_ndb_slot_set_free_loses_no_package_silently(shared_fixtures: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    dest = root / "usr/lib/sysimage/rpm/Packages.db"
    dest.parent.mkdir(parents=True)
    data = bytearray((shared_fixtures / "rpm/ndb/sle15-bci.Packages.db").read_bytes())
    index = struct.unpack_from("<I", data, 36)[0]  # the first slot's package
    struct.pack_into("<I", data, 40, 0)  # its block offset 0: a free slot
    dest.write_bytes(bytes(data))
    db = read_root(root)
    assert len(db.packages) == 35
    assert f"1 blobs no slot points to (package index [{index}])" in messages(db)


@pytest.mark.parametrize("backend", BACKENDS)
def test_digest_tag_of_the_wrong_type_is_a_problem_not_a_crash(
    shared_fixtures: Path, tmp_path: Path, backend: str
) -> None:
    def edit(blob: bytes) -> bytes:
        data = bytearray(blob)
        struct.pack_into(">II", data, _entries(blob)[SHA256HEADER][0] + 4, 7, 0)  # BIN, offset
        struct.pack_into(">I", data, _entries(blob)[SHA256HEADER][0] + 12, 1)  # count
        return bytes(data)

    db = read_root(damaged(shared_fixtures, tmp_path, backend, edit))
    assert [p.name for p in db.packages] == ["htop"] and db.files
    assert "header digest tag unreadable" in messages(db)


def test_ndb_sparse_free_space_is_searched_in_bounded_time(
    shared_fixtures: Path, tmp_path: Path
) -> None:
    """A Packages.db padded with a 64 GiB hole: the lost-blob search skips holes."""
    root = tmp_path / "root"
    dest = root / "usr/lib/sysimage/rpm/Packages.db"
    dest.parent.mkdir(parents=True)
    shutil.copyfile(shared_fixtures / "rpm/ndb/sle15-bci.Packages.db", dest)
    with open(dest, "r+b") as handle:
        handle.truncate(64 << 30)
    started = time.monotonic()
    db = read_root(root)
    assert time.monotonic() - started < 5
    assert len(db.packages) == 36 and db.problems == ()


def test_ndb_free_space_search_is_capped(
    shared_fixtures: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pkgdb.rpm import _ndb

    monkeypatch.setattr(_ndb, "MAX_FREE_SCAN", 0)
    root = tmp_path / "root"
    dest = root / "usr/lib/sysimage/rpm/Packages.db"
    dest.parent.mkdir(parents=True)
    data = (shared_fixtures / "rpm/ndb/sle15-bci.Packages.db").read_bytes()
    dest.write_bytes(data + b"\x01" * 4096)  # written (not a hole) free space at the end
    db = read_root(root)
    assert "bytes of free space beyond the first 0 not searched" in messages(db)


@pytest.mark.parametrize("backend", BACKENDS)
def test_wrong_color_state_on_a_file_without_colour_is_a_problem(
    shared_fixtures: Path, tmp_path: Path, backend: str
) -> None:
    """FILESTATES lies outside the header digest; "wrong color" (content not compared) is only
    possible for a file of a colour (ELF), so on htop's .desktop file it is damage."""

    def edit(blob: bytes) -> bytes:
        il = struct.unpack_from(">I", blob)[0]
        _, _, offset, _ = _entries(blob)[FILESTATES]
        data = bytearray(blob)
        data[8 + 16 * il + offset + _strings(blob, BASENAMES).index(b"htop.desktop")] = 4
        return bytes(data)

    db = read_root(damaged(shared_fixtures, tmp_path, backend, edit))
    assert "FILESTATES values no rpm writes" in messages(db)
    assert b"usr/share/applications/htop.desktop" not in {f.path for f in db.files}


def _strings(blob: bytes, tag: int) -> list[bytes]:
    il = struct.unpack_from(">I", blob)[0]
    _, _, offset, count = _entries(blob)[tag]
    return blob[8 + 16 * il + offset :].split(b"\0")[:count]


@pytest.mark.parametrize("backend", BACKENDS)
def test_entry_after_the_region_replacing_a_verified_tag_is_a_problem(
    shared_fixtures: Path, tmp_path: Path, backend: str
) -> None:
    """INSTALLTIME's entry (after the region) renamed FILEVERIFYFLAGS: as rpm, the last entry
    of a tag wins, which would slip new verify flags past the region's digest."""
    db = read_root(damaged(shared_fixtures, tmp_path, backend, rename_tag(1008, 1045)))
    assert "tags [1045] of the immutable header region are replaced after it" in messages(db)
