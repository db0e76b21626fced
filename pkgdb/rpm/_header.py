"""A bounded parser for one rpm header blob as an rpmdb stores it (no lead, no magic, no signature).

Layout (rpm `lib/header.c`, `hdrblobInit`/`hdrblobVerifyInfo`; all integers big-endian):
`il` (index entry count, u32), `dl` (data store length, u32), `il` entries of 16 bytes
(tag, type, offset into the data store, count), then `dl` bytes of data. The blob is exactly
8 + 16*il + dl bytes. Every offset and count is checked against the data store before anything
is sliced, and a structural fault raises `HeaderError` (the reader turns it into a problem that
names the database and the header number); nothing here asserts, loops unboundedly or allocates
more than the blob's own size.

Why not `rpmfile` (2.2.1, `rpmfile.headers._readheader`)? Measured on real rpmdb blobs (see
tests/test_pkgdb_rpm.py::test_rpmfile_cannot_parse_rpmdb_blobs_safely): it cannot read a blob as
stored, since it scans forward for the `.rpm` header magic `8e ad e8`, which a blob lacks; on the
htop blob it latched onto a stray 0x8e byte in the data and died on an `assert`. With a magic
prepended it parses intact blobs, but on damaged ones it raises ValueError/AssertionError/
struct.error instead of its RPMError, accepts `dl = 0xffffffff` (read as -1: "read the rest"),
and returns 348 basenames for an entry whose count was raised by 100000 (silently wrong, no
error). It has no CHAR/INT8/INT64 decoders (FILESTATES comes back as the string "could not
extract 1"; LONGFILESIZES likewise). So rpmdb blobs use this parser; rpmfile is only a test
referee for the `.rpm` files the tests build.
"""

from __future__ import annotations

import struct
from bisect import bisect_right
from typing import Final

__all__ = [
    "MAX_DATA_BYTES",
    "MAX_INDEX_ENTRIES",
    "Header",
    "HeaderError",
    "RpmType",
    "parse",
]

# rpm's own ceilings (header_internal.h: hdrchkTags / HEADER_DATA_MAX): a blob beyond them is
# rejected by rpm too, so no real database holds one.
MAX_INDEX_ENTRIES: Final = 0xFFFF
MAX_DATA_BYTES: Final = 0x0FFFFFFF

_PREAMBLE = struct.Struct(">II")
_ENTRY_SIZE = 16


class RpmType:
    """rpm tag data types (rpmtag.h `rpmTagType`)."""

    NULL: Final = 0
    CHAR: Final = 1
    INT8: Final = 2
    INT16: Final = 3
    INT32: Final = 4
    INT64: Final = 5
    STRING: Final = 6
    BIN: Final = 7
    STRING_ARRAY: Final = 8
    I18NSTRING: Final = 9


# Fixed-size types: (item size, which is also rpm's required alignment, struct code).
_FIXED = {
    RpmType.CHAR: (1, "B"),
    RpmType.INT8: (1, "B"),
    RpmType.INT16: (2, "H"),
    RpmType.INT32: (4, "I"),
    RpmType.INT64: (8, "Q"),
}
_STRINGS = frozenset({RpmType.STRING, RpmType.STRING_ARRAY, RpmType.I18NSTRING})
# Bytes per item, by type, for the bounds check in parse(): the fixed sizes, 1 for BIN, 0 for
# the types whose extent is only known by their NULs (NULL and the strings).
_ITEM_BYTES = (0, 1, 1, 2, 4, 8, 0, 1, 0, 0)


class HeaderError(ValueError):
    """A header blob is malformed; the message says where."""


class Header:
    """The index of one header blob; values are decoded (and checked) only when asked for.

    A plain slotted class, not a dataclass: it is internal, and each dataclass costs about a
    millisecond of import time at every start of the scanner (measured with -X importtime).
    The blob is kept whole, not copied: entry offsets are relative to `base`, where the data
    store begins, and the store ends where the blob does (parse() checked the length).
    """

    __slots__ = ("_base", "_blob", "_ends", "_entries")

    def __init__(self, blob: bytes, base: int, entries: dict[int, tuple[int, int, int]]) -> None:
        self._blob = blob
        self._base = base
        self._entries = entries  # tag -> (type, offset into the data store, count)
        self._ends: list[int] | None = None  # sorted entry offsets, made on first string read

    def __contains__(self, tag: int) -> bool:
        return tag in self._entries

    def string(self, tag: int) -> bytes | None:
        """A STRING (or the first string of an array / I18NSTRING); None if the tag is absent."""
        entry = self._entries.get(tag)
        return None if entry is None else self._split(tag, entry, 1)[0]

    def strings(self, tag: int) -> tuple[bytes, ...] | None:
        """A STRING_ARRAY / I18NSTRING / STRING as a tuple; None if the tag is absent."""
        entry = self._entries.get(tag)
        return None if entry is None else tuple(self._split(tag, entry, entry[2]))

    def ints(self, tag: int) -> tuple[int, ...] | None:
        """An integer array (CHAR, INT8, INT16, INT32, INT64, unsigned); None if absent."""
        entry = self._entries.get(tag)
        if entry is None:
            return None
        type_, offset, count = entry
        fixed = _FIXED.get(type_)
        if fixed is None:
            raise HeaderError(f"tag {tag}: type {type_} is not an integer type")
        # parse() checked offset + count * size against the data store
        return struct.unpack_from(f">{count}{fixed[1]}", self._blob, self._base + offset)

    def integer(self, tag: int) -> int | None:
        """The first value of an integer tag; None if absent."""
        values = self.ints(tag)
        return None if values is None else values[0]

    def _split(self, tag: int, entry: tuple[int, int, int], wanted: int) -> list[bytes]:
        """The first `wanted` NUL-terminated strings of `entry`, as a list."""
        type_, offset, count = entry
        if type_ not in _STRINGS:
            raise HeaderError(f"tag {tag}: type {type_} is not a string type")
        blob, start = self._blob, self._base + offset
        # rpm lays the entries' data out one after another, so the strings normally end where
        # the next entry's data begins: split only up to there (the rest of the store can be
        # megabytes), and up to the end of the store only if that did not hold `wanted` NULs.
        # `wanted` NULs must lie inside the data store; split(maxsplit) stops after them, so
        # this costs at most twice the size of the store, whatever the count claims.
        ends = self._ends
        if ends is None:
            ends = self._ends = sorted({o for _, o, _ in self._entries.values()})
        after = bisect_right(ends, offset)
        parts = None
        if after < len(ends):
            parts = blob[start : self._base + ends[after]].split(b"\0", wanted)
        if parts is None or len(parts) <= wanted:
            parts = blob[start:].split(b"\0", wanted)
        if len(parts) <= wanted:
            raise HeaderError(
                f"tag {tag}: {count} strings at offset {offset}, but only "
                f"{len(parts) - 1} terminated strings before the end of the data store"
            )
        del parts[wanted]
        return parts


def parse(blob: bytes) -> Header:
    """Parse the index of one rpmdb header blob, checking every entry against the data store."""
    if len(blob) < _PREAMBLE.size:
        raise HeaderError(f"blob of {len(blob)} bytes is shorter than the 8-byte preamble")
    il, dl = _PREAMBLE.unpack_from(blob)
    if il == 0 or il > MAX_INDEX_ENTRIES:
        raise HeaderError(f"index entry count {il} is outside 1..{MAX_INDEX_ENTRIES}")
    if dl > MAX_DATA_BYTES:
        raise HeaderError(f"data length {dl} exceeds {MAX_DATA_BYTES}")
    data_start = _PREAMBLE.size + il * _ENTRY_SIZE
    if len(blob) != data_start + dl:
        raise HeaderError(
            f"blob is {len(blob)} bytes, but 8 + 16 * {il} entries + {dl} data bytes "
            f"= {data_start + dl}"
        )
    entries: dict[int, tuple[int, int, int]] = {}
    item_bytes = _ITEM_BYTES
    index = memoryview(blob)[_PREAMBLE.size : data_start]
    for tag, type_, offset, count in struct.iter_unpack(">IIII", index):
        # The common case inline; anything doubtful goes to _check_entry, which raises with
        # the message for the first rule broken (an entry it accepts is kept).
        size = item_bytes[type_] if type_ <= RpmType.I18NSTRING else -1
        if (
            size < 0
            or count == 0
            or count > dl
            or offset >= dl
            or (size and (offset % size or offset + count * size > dl))
            or (type_ == RpmType.STRING and count != 1)
        ):
            _check_entry(tag, type_, offset, count, dl)
        # Entries added after install ("dribbles", e.g. FILESTATES) follow the immutable region
        # and replace a duplicate inside it, as in rpm's headerImport: the last one wins.
        entries[tag] = (type_, offset, count)
    return Header(blob, data_start, entries)


def _check_entry(tag: int, type_: int, offset: int, count: int, dl: int) -> None:
    where = f"tag {tag} (type {type_}, offset {offset}, count {count})"
    if type_ > RpmType.I18NSTRING:
        raise HeaderError(f"{where}: unknown data type")
    if count == 0 or count > dl:
        # every item takes at least one byte of the store (NULL entries are never stored)
        raise HeaderError(f"{where}: count outside 1..{dl}, the data length")
    if offset >= dl:
        raise HeaderError(f"{where}: offset beyond the {dl}-byte data store")
    fixed = _FIXED.get(type_)
    if fixed is not None:
        size = fixed[0]
        if offset % size:
            raise HeaderError(f"{where}: offset not aligned to {size} bytes")
        if offset + count * size > dl:
            raise HeaderError(f"{where}: {count} items of {size} bytes overrun the data store")
    elif type_ == RpmType.BIN:
        if offset + count > dl:
            raise HeaderError(f"{where}: {count} bytes overrun the data store")
    elif type_ == RpmType.STRING and count != 1:
        raise HeaderError(f"{where}: a STRING must have count 1")
