"""Fuzzing the rpm header parser and the Berkeley DB / ndb page readers with mutated real data.

Property: on any input they return, or raise only their own error (HeaderError, StorageError),
and yield only HeaderBlob / BlobProblem; never hang (signal.alarm), never another exception.
A short seeded run is part of the suite; SCANROOT_FUZZ_EXAMPLES=N (and SCANROOT_FUZZ_RANDOM=1
for fresh, non-derandomized inputs) runs a longer one locally.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pkgdb import PkgDBProblem, rpm
from pkgdb.rpm import _bdb, _header, _ndb, _sqlite
from pkgdb.rpm._package import Skipped, convert
from pkgdb.rpm._source import Backend, BlobProblem, HeaderBlob, StorageError

EXAMPLES = int(os.environ.get("SCANROOT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=os.environ.get("SCANROOT_FUZZ_RANDOM") != "1",
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
SHARED = Path(
    os.environ.get("SCANNER_SHARED", Path(__file__).resolve().parent.parent.parent / "shared")
)
RPM = SHARED / "fixtures" / "pkgdb" / "rpm"
pytestmark = pytest.mark.skipif(not RPM.is_dir(), reason=f"{RPM} absent: no real rpmdbs to mutate")


def _load(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""


def _blob() -> bytes:
    path = RPM / "sqlite" / "rockylinux-9-htop-only.rpmdb.sqlite"
    if not path.is_file():
        return b""
    connection = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
    try:
        return bytes(connection.execute("SELECT blob FROM Packages").fetchone()[0])
    finally:
        connection.close()


BLOB = _blob()
BDB = _load(RPM / "bdb" / "centos-8-htop-only.Packages")  # 7 pages: meta, 2 hash, 4 overflow
NDB = _load(RPM / "ndb" / "sle15-bci.Packages.db")[: 1 << 20]  # slot page + many blobs


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang("no answer within 10 s")


def guarded(call: Callable[[], object]) -> None:
    """Run `call` with a 10 s alarm: a hang fails the example instead of the suite."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(10)
    try:
        call()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def mutations(base: bytes, hot: list[int]) -> st.SearchStrategy[bytes]:
    """Real data with bytes overwritten (often at structural offsets), cut short or extended."""
    position = st.one_of(
        st.integers(0, max(len(base) - 1, 0)),
        st.sampled_from(hot).flatmap(lambda h: st.integers(max(h - 4, 0), h + 4)),
    )
    edit = st.tuples(position, st.binary(min_size=1, max_size=4))

    def apply(args: tuple[list[tuple[int, bytes]], int | None, bytes]) -> bytes:
        edits, cut, tail = args
        data = bytearray(base)
        for at, value in edits:
            data[at : at + len(value)] = value
        if cut is not None:
            del data[cut:]
        return bytes(data) + tail

    return st.tuples(
        st.lists(edit, min_size=1, max_size=8),
        st.none() | st.integers(0, len(base)),
        st.binary(max_size=8),
    ).map(apply)


def memfd(data: bytes) -> int:
    """An anonymous file holding `data`: the page readers need an fd, nothing touches disk."""
    fd = os.memfd_create("fuzz")
    os.write(fd, data)
    return fd


def _drain(items: Iterator[HeaderBlob | BlobProblem]) -> None:
    for item in items:
        assert isinstance(item, HeaderBlob | BlobProblem)
        if isinstance(item, HeaderBlob):
            _parse_and_convert(item.data)


def _parse_and_convert(data: bytes) -> None:
    try:
        convert(_header.parse(data), Skipped())
    except _header.HeaderError:
        pass


def _index_offsets(blob: bytes) -> list[int]:
    il = int.from_bytes(blob[:4], "big") if len(blob) >= 4 else 0
    return [0, 4] + [8 + 16 * i + f for i in range(min(il, 200)) for f in (4, 8, 12)]


@pytest.mark.skipif(not BLOB, reason="fixture absent")
@FUZZ
@given(mutations(BLOB, _index_offsets(BLOB)))
def test_fuzz_header_parse(data: bytes) -> None:
    guarded(lambda: _parse_and_convert(data))


def _read_all(reader: Callable[[int], Iterator[HeaderBlob | BlobProblem]], data: bytes) -> None:
    fd = memfd(data)
    try:
        try:
            items = reader(fd)
        except StorageError:
            return
        _drain(items)
    finally:
        os.close(fd)


def _bdb_hot() -> list[int]:
    # the metadata fields, and each page's header (pgno, prev, next, entries, hf_offset, type)
    meta = [12, 16, 20, 24, 25, 32, 72, 76, 80, 96, 100]
    return meta + [p * 4096 + f for p in range(1, 7) for f in (8, 12, 16, 20, 22, 25, 26, 28, 30)]


@pytest.mark.skipif(not BDB, reason="fixture absent")
@FUZZ
@given(mutations(BDB, _bdb_hot()))
def test_fuzz_bdb_pages(data: bytes) -> None:
    guarded(lambda: _read_all(_bdb.blobs, data))


def _ndb_hot() -> list[int]:
    slots = [0, 4, 8, 12] + [32 + 16 * i + f for i in range(40) for f in (0, 4, 8, 12)]
    heads = []
    for i in range(40):
        offset = int.from_bytes(NDB[32 + 16 * i + 8 : 32 + 16 * i + 12], "little") * 16
        heads += [offset, offset + 4, offset + 12, offset + 16, offset + 20]
    return slots + [h for h in heads if h < len(NDB)]


@pytest.mark.skipif(not NDB, reason="fixture absent")
@FUZZ
@given(mutations(NDB, _ndb_hot()))
def test_fuzz_ndb_pages(data: bytes) -> None:
    guarded(lambda: _read_all(_ndb.blobs, data))


# --- seeded campaign through the whole reader: never a silent clean -------------------------
#
# Each case is a real database (or header) damaged by a seeded mutation and read the way
# pkgdb.rpm.read reads the file it chose (backend, header parse, conversion, digest check).
# Property: no exception but StorageError (which read() turns into a problem), at most
# MUTATION_SECONDS per read, and never a silent clean: a read with no problem lists at least
# one package and one file (every base case lists some). SCANROOT_FUZZ_MUTATIONS=N per case
# runs a longer campaign locally; the outcome counts go to stdout (pytest -s).

MUTATIONS = int(os.environ.get("SCANROOT_FUZZ_MUTATIONS", "400"))
MUTATION_SECONDS = 2.0
SEED = int(os.environ.get("SCANROOT_FUZZ_SEED", "448"))


def _small_ndb() -> bytes:
    """A valid ndb file holding the two smallest real blobs of the SLE 15 Packages.db."""
    source = _load(RPM / "ndb" / "sle15-bci.Packages.db")
    if not source:
        return b""
    used = sorted(
        (count, index, offset)
        for magic, index, offset, count in struct.iter_unpack("<4sIII", source[32:4096])
        if magic == b"Slot" and offset
    )[:2]
    slots, blobs, block = [], [], 256  # blobs start after the one 4 KiB slot page
    for count, index, offset in used:
        slots.append(struct.pack("<4sIII", b"Slot", index, block, count))
        blobs.append(source[offset * 16 : (offset + count) * 16])
        block += count
    free = struct.pack("<4sIII", b"Slot", 0, 0, 0) * (254 - len(slots))
    return source[:32] + b"".join(slots) + free + b"".join(blobs)


def _sqlite_blob_only() -> bytes:
    return _load(RPM / "sqlite" / "rockylinux-9-htop-only.rpmdb.sqlite")


class _OneBlob:
    """A 'backend' whose file is one bare header blob: the header path without storage."""

    NAME = "header"
    FILENAME = b"header"

    @staticmethod
    def blobs(fd: int) -> Iterator[HeaderBlob | BlobProblem]:
        size = os.fstat(fd).st_size
        yield HeaderBlob(1, os.pread(fd, size, 0))


def _cases() -> dict[str, tuple[Backend, bytes, list[int]]]:
    small_ndb = _small_ndb()
    return {
        "header": (_OneBlob, BLOB, _index_offsets(BLOB)),
        "bdb": (_bdb, BDB, _bdb_hot()),
        # 23 pages: a 78 KB header over 20 overflow pages
        "bdb-overflow": (
            _bdb,
            _load(RPM / "bdb" / "libuuid-md5-trailing-zero.Packages"),
            _bdb_hot(),
        ),
        "ndb": (_ndb, small_ndb, [0, 4, 8, 12, 16] + list(range(32, 64)) + [4096, 4100, 4108]),
        "sqlite": (_sqlite, _sqlite_blob_only(), [16, 17, 18, 28, 32, 36, 44, 52, 56, 92, 96, 100]),
    }


CASES = _cases()


def _mutate(rng: random.Random, base: bytes, hot: list[int]) -> tuple[bytes, str]:
    """One seeded damage: bytes overwritten (often at structural offsets), a span zeroed or
    shifted, the file cut short or extended. Returns the data and a description."""
    data = bytearray(base)
    kind = rng.choice(("overwrite", "overwrite", "hot", "hot", "zero", "shift", "cut", "extend"))
    if kind in ("overwrite", "hot"):
        for _ in range(rng.randint(1, 4)):
            if kind == "hot":
                at = max(0, min(len(data) - 1, rng.choice(hot) + rng.randint(-4, 4)))
            else:
                at = rng.randrange(len(data))
            data[at : at + 1] = bytes([rng.randrange(256)])
        return bytes(data), kind
    if kind == "zero":
        at, length = rng.randrange(len(data)), rng.choice((16, 512, 4096))
        data[at : at + length] = bytes(min(length, len(data) - at))
        return bytes(data), f"zero {length}@{at}"
    if kind == "shift":
        at, length = rng.randrange(len(data)), rng.randint(1, 64)
        return bytes(data[:at] + bytes(length) + data[at:]), f"shift {length}@{at}"
    if kind == "cut":
        at = rng.randrange(len(data))
        return bytes(data[:at]), f"cut@{at}"
    return bytes(data) + bytes(rng.randint(1, 4096)), "extend"


def _read_case(backend: Backend, data: bytes) -> tuple[str, int, int, tuple[object, ...]]:
    """(outcome, packages, files, what was read) of one database image read like read() does."""
    fd = memfd(data)
    problems: list[PkgDBProblem] = []
    try:
        try:
            db = rpm._collect(b"db", backend, backend.blobs(fd), problems)
        except StorageError:
            return "refused", 0, 0, ()
    finally:
        os.close(fd)
    shape = (db.packages, db.files)
    return ("problem" if problems else "clean"), len(db.packages), len(db.files), shape


@pytest.mark.parametrize("case", CASES)
def test_mutations_are_never_a_silent_clean(case: str) -> None:
    backend, base, hot = CASES[case]
    if not base:
        pytest.skip("fixture absent")
    outcome, packages, files, original = _read_case(backend, base)
    assert (outcome, packages > 0, files > 0) == ("clean", True, True)
    rng = random.Random(f"{SEED}-{case}")
    counts: Counter[str] = Counter()
    different: list[str] = []
    slowest = 0.0
    for number in range(MUTATIONS):
        data, how = _mutate(rng, base, hot)
        started = time.monotonic()
        result: list[tuple[str, int, int, tuple[object, ...]]] = []
        guarded(lambda result=result, data=data: result.append(_read_case(backend, data)))
        took = time.monotonic() - started
        slowest = max(slowest, took)
        outcome, packages, files, shape = result[0]
        where = f"{case} mutation {number} (seed {SEED}): {how}"
        assert took < MUTATION_SECONDS, where
        if outcome == "clean":
            assert packages and files, f"silent clean: {where}"
            outcome = "same" if shape == original else "clean, different"
            if outcome != "same":
                different.append(how)
        counts[outcome] += 1
    print(
        f"\n{case}: {MUTATIONS} mutations, {dict(counts)}, slowest read {slowest * 1000:.0f} ms"
        + (f"; silently different: {different[:5]}" if different else "")
    )
