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
from dataclasses import dataclass
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


class HeaderError(ValueError):
    """A header blob is malformed; the message says where."""


@dataclass(frozen=True, slots=True)
class _Entry:
    type: int
    offset: int
    count: int


@dataclass(frozen=True, slots=True)
class Header:
    """The index of one header blob; values are decoded (and checked) only when asked for."""

    entries: dict[int, _Entry]
    data: bytes  # the data store only

    def __contains__(self, tag: int) -> bool:
        return tag in self.entries

    def string(self, tag: int) -> bytes | None:
        """A STRING (or the first string of an array / I18NSTRING); None if the tag is absent."""
        values = self._strings(tag, first_only=True)
        return None if values is None else values[0]

    def strings(self, tag: int) -> tuple[bytes, ...] | None:
        """A STRING_ARRAY / I18NSTRING / STRING as a tuple; None if the tag is absent."""
        return self._strings(tag, first_only=False)

    def ints(self, tag: int) -> tuple[int, ...] | None:
        """An integer array (CHAR, INT8, INT16, INT32, INT64, unsigned); None if absent."""
        entry = self.entries.get(tag)
        if entry is None:
            return None
        fixed = _FIXED.get(entry.type)
        if fixed is None:
            raise HeaderError(f"tag {tag}: type {entry.type} is not an integer type")
        # parse() checked offset + count * size against the data store
        return struct.unpack_from(f">{entry.count}{fixed[1]}", self.data, entry.offset)

    def integer(self, tag: int) -> int | None:
        """The first value of an integer tag; None if absent."""
        values = self.ints(tag)
        return None if values is None else values[0]

    def _strings(self, tag: int, first_only: bool) -> tuple[bytes, ...] | None:
        entry = self.entries.get(tag)
        if entry is None:
            return None
        if entry.type not in _STRINGS:
            raise HeaderError(f"tag {tag}: type {entry.type} is not a string type")
        wanted = 1 if first_only else entry.count
        # `wanted` NULs must lie inside the data store; split(maxsplit) stops after them, so
        # this costs at most the size of the store, whatever the count claims.
        parts = self.data[entry.offset :].split(b"\0", wanted)
        if len(parts) <= wanted:
            raise HeaderError(
                f"tag {tag}: {entry.count} strings at offset {entry.offset}, but only "
                f"{len(parts) - 1} terminated strings before the end of the data store"
            )
        del parts[wanted]
        return tuple(parts)


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
    data = blob[data_start:]
    entries: dict[int, _Entry] = {}
    for tag, type_, offset, count in struct.iter_unpack(">IIII", blob[_PREAMBLE.size : data_start]):
        _check_entry(tag, type_, offset, count, dl)
        # Entries added after install ("dribbles", e.g. FILESTATES) follow the immutable region
        # and replace a duplicate inside it, as in rpm's headerImport: the last one wins.
        entries[tag] = _Entry(type_, offset, count)
    return Header(entries, data)


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
