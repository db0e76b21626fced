"""A strict tar member reader (ustar, pax, GNU long names) whose file data is copied fd to fd.

Why not `tarfile`: its per-member Python machinery (a stream object per member, several reads per
header) cost ~10x the whole scan of the same root (bench/image_input.py). Here a header is one
slice of a read-ahead buffer, and a file's bytes go from the layer blob to the new file with
`sendfile(2)` (page cache to page cache, no copy through Python) when the layer is an uncompressed
extent of a real file; compressed layers stream through their decoder in buffers.

Stricter than `tarfile` on purpose: a bad checksum, a negative or absurd number, a truncated
member, an oversized or malformed pax/GNU record is an error naming the offset — never a silent
end of the layer. Formats: POSIX.1-2001 pax (https://pubs.opengroup.org/onlinepubs/9699919799/
utilities/pax.html#tag_20_92_13_01), GNU tar's 'L'/'K' long names and base-256 numbers
(https://www.gnu.org/software/tar/manual/html_node/Standard.html), and GNU sparse files in all
four of GNU tar's formats: old GNU 'S' and pax 0.0, 0.1 and 1.0
(https://www.gnu.org/software/tar/manual/html_node/Sparse-Formats.html). A sparse member's map
is checked as Go's archive/tar (what container runtimes extract with) checks it: entries in
order, not overlapping, inside the real size, their sizes adding up to the data stored.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from _native import TarFormatError, untar

parse_header = untar.parse_header  # the Cython parser when built, else its pure twin
parse_pax = untar.parse_pax
parse_sparse = untar.parse_sparse

__all__ = [
    "BLOCK",
    "ExtentBlocks",
    "Member",
    "StreamBlocks",
    "TarFormatError",
    "fill",
    "members",
    "parse_header",
    "parse_pax",
    "parse_sparse",
]

BLOCK = 512
MAX_META = 1 << 20  # a pax or GNU long-name record: paths are kilobytes at most
_WINDOW = 1 << 18  # read-ahead for headers and small files (a stream's decoder)
_SMALL = 1 << 16  # files up to this size are written from the read-ahead buffer
# An extent's read-ahead: smaller, since most file data between headers is now skipped unread
# (placed files, image.py), and each window is a copy (bookworm-apps: 200 MB at 256 KiB).
_EXTENT_WINDOW = 1 << 15
# '7' (contiguous) is a regular file to every reader; parse_header already turned a '\0' member
# whose name ends in '/' into a directory.
_REGULAR = (b"0", b"\x00", b"7")
_MTIME_LIMIT = 1 << 40  # about year 36,812: beyond it utime(2) fails; refuse it with the rest
# Types whose size field never announces data (Go's archive/tar and tarfile agree).
_HEADER_ONLY = (b"1", b"2", b"3", b"4", b"5", b"6")
_ZERO = bytes(BLOCK)
# A sparse map is read into memory: bounded like a pax record (GNU tar has no bound at all).
_MAX_SPARSE_BLOCKS = MAX_META // BLOCK  # old GNU extension blocks: 21 entries each
_SPARSE_PREFIX = "GNU.sparse."
SparseMap = tuple[tuple[int, int], ...]


@dataclass(slots=True)
class Member:
    """One tar member after pax/GNU extensions are applied. `offset` is of its header."""

    name: str
    type: bytes
    mode: int
    uid: int
    gid: int
    size: int
    mtime: float
    linkname: str
    offset: int
    # A sparse file: its (offset, size) data regions, `size` bytes stored one after the other,
    # and the file's real size; the rest of it is holes (zeros).
    sparse: SparseMap | None = None
    realsize: int = 0

    def isreg(self) -> bool:
        return self.type in _REGULAR

    def isdir(self) -> bool:
        return self.type == b"5"

    def issym(self) -> bool:
        return self.type == b"2"

    def islnk(self) -> bool:
        return self.type == b"1"

    def ischr(self) -> bool:
        return self.type == b"3"

    def isblk(self) -> bool:
        return self.type == b"4"

    def isfifo(self) -> bool:
        return self.type == b"6"


class Blocks(Protocol):
    """Where the tar bytes come from: read exactly, skip, or copy straight into a file."""

    offset: int

    def read(self, size: int) -> bytes: ...  # fewer bytes only at the end of the layer

    def skip(self, size: int) -> None: ...

    def copy(self, fd: int, size: int) -> None: ...


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class ExtentBlocks:
    """An uncompressed layer: `length` bytes at `start` of the file `fd` (a blob, or a member of
    an uncompressed outer archive). Big files are copied with sendfile from that offset."""

    def __init__(self, fd: int, start: int, length: int) -> None:
        self.fd = fd
        self.start = start
        self.end = start + length
        self.offset = 0  # consumed, relative to start
        self._buffer = b""
        self._at = 0  # index of the next unread byte in _buffer

    def read(self, size: int) -> bytes:
        available = len(self._buffer) - self._at
        if available < size:
            position = self.start + self.offset
            want = min(max(size, _EXTENT_WINDOW), self.end - position)
            self._buffer = os.pread(self.fd, want, position) if want > 0 else b""
            self._at = 0
            if len(self._buffer) < want:
                raise TarFormatError(
                    f"the layer ends early at {self.offset} (a truncated archive, or the file shrank)"
                )
        data = self._buffer[self._at : self._at + size]
        self._at += len(data)
        self.offset += len(data)
        return data

    def skip(self, size: int) -> None:
        if self.start + self.offset + size > self.end:
            raise TarFormatError(f"member data truncated at {self.offset}")
        available = len(self._buffer) - self._at
        if size <= available:
            self._at += size
        else:
            self._buffer, self._at = b"", 0
        self.offset += size

    def claim(self, size: int) -> bytes | int:
        """Consume `size` bytes of member data: the bytes themselves when small (they are in the
        read-ahead window), else their absolute offset in `fd`, for `fill` to sendfile them."""
        if size <= _SMALL or size <= len(self._buffer) - self._at:
            data = self.read(size)
            if len(data) < size:
                raise TarFormatError(f"member data truncated at {self.offset}")
            return data
        position = self.start + self.offset
        if position + size > self.end:
            raise TarFormatError(f"member data truncated at {self.offset}")
        self._buffer, self._at = b"", 0
        self.offset += size
        return position

    def copy(self, fd: int, size: int) -> None:
        fill(fd, self.fd, self.claim(size), size)

    def place(self, size: int) -> int:
        """Consume `size` bytes of member data unread; their absolute offset in `fd`."""
        position = self.start + self.offset
        self.skip(size)
        return position


def fill(fd: int, source: int, claim: bytes | int, size: int) -> None:
    """Write a claimed member's data into `fd`: bytes as they are, an offset of `source` with
    sendfile (page cache to page cache; it leaves `source`'s file position alone)."""
    if isinstance(claim, bytes):
        _write_all(fd, claim)
        return
    done = 0
    while done < size:
        sent = os.sendfile(fd, source, claim + done, size - done)
        if sent == 0:
            raise TarFormatError("the layer ends early (a truncated archive, or the file shrank)")
        done += sent


class _Reader(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class StreamBlocks:
    """A layer that can only be read forward (a decompressor, a member of a compressed archive)."""

    def __init__(self, stream: _Reader) -> None:
        self.stream = stream
        self.offset = 0
        self._buffer = b""
        self._at = 0

    def read(self, size: int) -> bytes:
        available = len(self._buffer) - self._at
        if available < size:
            parts = [self._buffer[self._at :]]
            missing = size - available
            while missing > 0:
                chunk = self.stream.read(max(missing, _WINDOW))
                if not chunk:
                    break
                parts.append(chunk)
                missing -= len(chunk)
            self._buffer, self._at = b"".join(parts), 0
        data = self._buffer[self._at : self._at + size]
        self._at += len(data)
        self.offset += len(data)
        return data

    def skip(self, size: int) -> None:
        while size > 0:
            step = min(size, _WINDOW)
            if len(self.read(step)) < step:
                raise TarFormatError(f"member data truncated at {self.offset}")
            size -= step

    def copy(self, fd: int, size: int) -> None:
        while size > 0:
            step = min(size, _WINDOW)
            data = self.read(step)
            if len(data) < step:
                raise TarFormatError(f"member data truncated at {self.offset}")
            _write_all(fd, data)
            size -= step


# -- headers ---------------------------------------------------------------------------------


def _text(field: bytes) -> str:
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _pax_number(records: dict[str, str], key: str, default: int, offset: int) -> int:
    value = records.get(key)
    if value is None:
        return default
    if not value.isdigit() or not value.isascii():
        raise TarFormatError(f"pax header at {offset}: {key}={value!r} is not a number")
    return int(value)


def _meta(blocks: Blocks, size: int, offset: int, what: str) -> bytes:
    """The data of a pax or GNU long-name member, bounded (tarfile reads any size into memory)."""
    if size > MAX_META:
        raise TarFormatError(f"{what} at {offset}: {size} bytes (limit {MAX_META})")
    data = blocks.read(size)
    if len(data) < size:
        raise TarFormatError(f"{what} at {offset}: truncated")
    blocks.skip(-size % BLOCK)
    return data


# -- sparse files ----------------------------------------------------------------------------


def _gnu_sparse(blocks: Blocks, header: bytes, offset: int) -> tuple[SparseMap, int]:
    """An old GNU 'S' member's map: in its header, then in extension blocks before the data."""
    entries, extended, realsize = parse_sparse(header, offset, False)
    complete = len(entries) == 4
    for _count in range(_MAX_SPARSE_BLOCKS):
        if not extended:
            return tuple(entries), realsize
        if not complete:
            raise TarFormatError(f"sparse header at {offset}: the map ends before its extension")
        block = blocks.read(BLOCK)
        more, extended, _ = parse_sparse(block, offset, True)
        complete = len(more) == 21
        entries += more
    raise TarFormatError(
        f"sparse header at {offset}: more than {_MAX_SPARSE_BLOCKS} extension blocks (limit)"
    )


def _decimal(text: str, what: str, offset: int) -> int:
    if not text.isdigit() or not text.isascii() or len(text) > 19:
        raise TarFormatError(f"pax header at {offset}: {what} {text[:40]!r} is not a number")
    return int(text)


def _pax_pairs(raw: bytes) -> Iterator[tuple[str, str]]:
    """Every record of a pax header in order, repeated keys included (parse_pax checked it)."""
    at = 0
    while at < len(raw) and raw[at] != 0:
        space = raw.index(b" ", at)
        end = at + int(raw[at:space])
        key, _, value = raw[space + 1 : end - 1].partition(b"=")
        yield key.decode("utf-8", "surrogateescape"), value.decode("utf-8", "surrogateescape")
        at = end


def _pax_sparse(
    blocks: Blocks, records: dict[str, str], raw: bytes, size: int, offset: int
) -> tuple[SparseMap, int, int]:
    """(map, real size, data size after the map) of a pax sparse member: 0.0 (repeated offset
    and numbytes records), 0.1 (one GNU.sparse.map record) or 1.0 (the map is the first
    blocks of the member's data, decimal numbers one a line)."""
    numbers: list[int]
    major = records.get(_SPARSE_PREFIX + "major")
    if major is not None:
        minor = records.get(_SPARSE_PREFIX + "minor")
        if (major, minor) != ("1", "0"):
            raise TarFormatError(f"pax header at {offset}: sparse format {major}.{minor} unknown")
        realsize = _decimal(records.get(_SPARSE_PREFIX + "realsize", ""), "real size", offset)
        numbers, used = _map_in_data(blocks, size, offset)
        size -= used
    else:
        realsize = _decimal(records.get(_SPARSE_PREFIX + "size", ""), "sparse size", offset)
        if _SPARSE_PREFIX + "map" in records:  # 0.1
            text = records[_SPARSE_PREFIX + "map"]
            parts = text.split(",") if text else []
            numbers = [_decimal(part, "sparse map entry", offset) for part in parts]
        else:  # 0.0
            wanted = {_SPARSE_PREFIX + "offset": 0, _SPARSE_PREFIX + "numbytes": 1}
            numbers = []
            for key, value in _pax_pairs(raw):
                if key in wanted:
                    if wanted[key] != len(numbers) % 2:
                        raise TarFormatError(f"pax header at {offset}: sparse records out of order")
                    numbers.append(_decimal(value, key, offset))
        count = records.get(_SPARSE_PREFIX + "numblocks")
        if count is not None and _decimal(count, "numblocks", offset) * 2 != len(numbers):
            raise TarFormatError(f"pax header at {offset}: sparse numblocks disagrees with the map")
    if len(numbers) % 2:
        raise TarFormatError(f"pax header at {offset}: sparse map of an odd length")
    pairs = tuple(zip(numbers[0::2], numbers[1::2], strict=True))
    return pairs, realsize, size


def _map_in_data(blocks: Blocks, size: int, offset: int) -> tuple[list[int], int]:
    """Pax 1.0: the map's numbers (count, then offset and size of each region), one per line
    at the start of the data, padded to a block; and how many bytes of data it took."""
    count: int | None = None
    numbers: list[int] = []
    partial = b""
    used = 0
    while count is None or len(numbers) < 2 * count:
        if used + BLOCK > min(size, MAX_META):
            raise TarFormatError(f"sparse map at {offset}: malformed, truncated or too long")
        block = blocks.read(BLOCK)
        if len(block) < BLOCK:
            raise TarFormatError(f"sparse map at {offset}: truncated")
        used += BLOCK
        lines = (partial + block).split(b"\n")
        partial = lines.pop()  # the start of a number the next block ends, or the padding
        for line in lines:
            value = _decimal(line.decode("ascii", "replace"), "sparse map entry", offset)
            if count is None:
                count = value
            else:
                numbers.append(value)
            if len(numbers) == 2 * count:
                break  # the rest of the block is padding
    return numbers, used


def _check_map(regions: SparseMap, realsize: int, size: int, offset: int) -> None:
    """Go's archive/tar's rules: in order, no overlap, within the real size, sizes add up."""
    end = 0
    stored = 0
    for start, length in regions:
        if start < end or start + length > realsize:
            raise TarFormatError(
                f"sparse map at {offset}: region ({start}, {length}) overlaps or passes the "
                f"real size {realsize}"
            )
        end = start + length
        stored += length
    if stored != size:
        raise TarFormatError(
            f"sparse map at {offset}: its regions hold {stored} bytes, the member {size}"
        )


def members(blocks: Blocks) -> Iterator[Member]:
    """Yield the members of a tar stream; the caller must consume (copy or skip) `size` bytes
    of each regular member before asking for the next. Stops at the end (two zero blocks,
    or one and the end of the stream)."""
    global_pax: dict[str, str] = {}
    pax: dict[str, str] = {}
    pax_raw = b""  # the member's own pax header, for pax 0.0's repeated sparse records
    long_name: str | None = None
    long_link: str | None = None
    while True:
        offset = blocks.offset
        block = blocks.read(BLOCK)
        if not block:
            if offset == 0:
                raise TarFormatError("empty layer (no tar header)")
            return  # no end-of-archive blocks: accepted, like tar(1) and tarfile
        if block == _ZERO:
            if pax or long_name is not None or long_link is not None:
                raise TarFormatError(f"extended header at {offset} is not followed by a member")
            # The end is two zero blocks. One followed by a header hides what comes after from
            # us; docker's reader (Go archive/tar) refuses the layer there, `tar -i` extracts.
            following = blocks.read(BLOCK)
            if following and following != _ZERO:
                raise TarFormatError(f"a lone zero block at {offset} is followed by more data")
            return
        name, type_, mode, uid, gid, size, mtime, linkname = parse_header(block, offset)
        if type_ in (b"x", b"g"):
            raw = _meta(blocks, size, offset, "pax header")
            records = parse_pax(raw, offset)
            if type_ == b"x":
                pax.update(records)
                pax_raw = raw
            else:
                global_pax.update(records)
            continue
        if type_ in (b"L", b"K"):
            text = _text(_meta(blocks, size, offset, "GNU long name"))
            if type_ == b"L":
                long_name = text
            else:
                long_link = text
            continue
        records = {**global_pax, **pax} if global_pax else pax
        if long_name is not None:
            name = long_name
        if long_link is not None:
            linkname = long_link
        if records:
            if "mtime" in records:
                try:
                    mtime = int(float(records["mtime"]))
                except (ValueError, OverflowError):  # "nan", "inf", not a number
                    raise TarFormatError(f"pax header at {offset}: bad mtime") from None
            if len(records) > 1 or "mtime" not in records:  # more than tarfile's usual mtime
                name = records.get("path", name)
                linkname = records.get("linkpath", linkname)
                size = _pax_number(records, "size", size, offset)
                uid = _pax_number(records, "uid", uid, offset)
                gid = _pax_number(records, "gid", gid, offset)
        if not -_MTIME_LIMIT < mtime < _MTIME_LIMIT:
            raise TarFormatError(f"header at {offset}: mtime {mtime} out of range")
        sparse: SparseMap | None = None
        realsize = 0
        if type_ == b"S":
            sparse, realsize = _gnu_sparse(blocks, block, offset)
        elif type_ in _REGULAR and any(key.startswith(_SPARSE_PREFIX) for key in pax):
            name = pax.get(_SPARSE_PREFIX + "name", name)  # 0.1, 1.0: the header's is made up
            sparse, realsize, size = _pax_sparse(blocks, pax, pax_raw, size, offset)
        if sparse is not None:
            _check_map(sparse, realsize, size, offset)
        pax, pax_raw, long_name, long_link = {}, b"", None, None
        if type_ in _HEADER_ONLY:
            size_of_data = 0
        else:
            size_of_data = size
        _check_ids(uid, gid, offset)
        yield Member(
            name, type_, mode, uid, gid, size_of_data, mtime, linkname, offset, sparse, realsize
        )
        # The caller consumed the data of a regular member; pad to the block boundary.
        blocks.skip(-size_of_data % BLOCK)


# uid_t is 32 bits, and (uid_t)-1 means "leave unchanged" to chown; a base-256 field can say
# anything beyond (negative, 88 bits): a malformed header, refused as such.
_MAX_ID = 2**32 - 2


def _check_ids(uid: int, gid: int, offset: int) -> None:
    for name, value in (("uid", uid), ("gid", gid)):
        if not 0 <= value <= _MAX_ID:
            raise TarFormatError(f"header at {offset}: {name} {value} out of range")
