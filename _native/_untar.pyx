# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython twin of untar_py.py: parse one tar header block and one pax extended header.

The same checks in the same order as the twin, so both raise the same TarFormatError message
(tests/test_untar.py fuzzes both against each other). No GIL release: a header is 512 bytes.
"""

from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t

from .types import TarFormatError

__all__ = ["BLOCK", "parse_header", "parse_pax", "parse_sparse"]

BLOCK = 512
cdef uint64_t _LIMIT = (<uint64_t>1) << 63


cdef str _text(const unsigned char* field, Py_ssize_t size):
    cdef Py_ssize_t end = 0
    while end < size and field[end] != 0:
        end += 1
    return PyUnicode_DecodeUTF8(<const char*>field, end, "surrogateescape")


cdef object _number(const unsigned char* field, Py_ssize_t size, str what, object offset):
    cdef uint64_t value
    cdef Py_ssize_t index, start, end
    if field[0] & 0x80:
        if field[0] == 0xFF:
            raise TarFormatError(f"header at {offset}: negative {what}")
        value = field[0] & 0x7F
        for index in range(1, size):
            if value >> 55:  # the next shift would pass 2**63
                raise TarFormatError(f"header at {offset}: {what} is too large")
            value = (value << 8) | field[index]
        if value >= _LIMIT:
            raise TarFormatError(f"header at {offset}: {what} is too large")
        return value
    end = 0
    while end < size and field[end] != 0:
        end += 1
    start = 0
    while start < end and field[start] == 0x20:
        start += 1
    while end > start and field[end - 1] == 0x20:
        end -= 1
    value = 0
    for index in range(start, end):
        if field[index] < 0x30 or field[index] > 0x37:
            raise TarFormatError(f"header at {offset}: {what} field is not octal")
        value = (value << 3) | (field[index] - 0x30)  # 12 digits at most: 36 bits
    return value


def parse_header(bytes block not None, offset):
    """(name, type, mode, uid, gid, size, mtime, linkname) of a 512-byte header; checks the sum."""
    if len(block) != BLOCK:
        raise TarFormatError(f"truncated header at {offset}")
    cdef const unsigned char* raw = <const unsigned char*>(<char*>block)
    stored = _number(raw + 148, 8, "checksum", offset)
    cdef long unsigned_sum = 8 * 0x20, high = 0
    cdef Py_ssize_t index
    for index in range(BLOCK):
        if 148 <= index < 156:
            continue
        unsigned_sum += raw[index]
        if raw[index] >= 0x80:
            high += 1
    # Some old tars summed signed chars; tarfile accepts either, so do we.
    if stored != unsigned_sum and stored != unsigned_sum - 256 * high:
        raise TarFormatError(f"header at {offset}: bad checksum (not a tar stream, or corrupt)")
    name = _text(raw, 100)
    cdef str prefix
    if raw[257:263] == b"ustar\x00":  # POSIX ustar: a prefix extends the name (not GNU's)
        prefix = _text(raw + 345, 155)
        if prefix:
            name = f"{prefix}/{name}"
    kind = block[156:157]
    if kind == b"\x00" and name.endswith("/"):
        kind = b"5"  # pre-POSIX tars mark directories with a trailing slash only
    return (
        name,
        kind,
        _number(raw + 100, 8, "mode", offset),
        _number(raw + 108, 8, "uid", offset),
        _number(raw + 116, 8, "gid", offset),
        _number(raw + 124, 12, "size", offset),
        _number(raw + 136, 12, "mtime", offset),
        _text(raw + 157, 100),
    )


def parse_pax(bytes data not None, offset):
    """The records of a pax extended header: `LEN KEY=VALUE\\n`, LEN counting the whole record."""
    records = {}
    cdef const unsigned char* raw = <const unsigned char*>(<char*>data)
    cdef Py_ssize_t size = len(data), at = 0, space, index, limit, equals, end
    cdef uint64_t length
    while at < size:
        if raw[at] == 0:  # NUL padding after the last record (seen in the wild)
            for index in range(at, size):
                if raw[index] != 0:
                    raise TarFormatError(f"pax header at {offset}: data after NUL padding")
            break
        limit = at + 20 if at + 20 < size else size
        space = -1
        for index in range(at, limit):
            if raw[index] == 0x20:
                space = index
                break
        if space <= at:
            raise TarFormatError(f"pax header at {offset}: malformed record length")
        length = 0
        for index in range(at, space):  # at most 19 digits: fits in 64 bits
            if raw[index] < 0x30 or raw[index] > 0x39:
                raise TarFormatError(f"pax header at {offset}: malformed record length")
            length = length * 10 + (raw[index] - 0x30)
        if (
            length <= <uint64_t>(space + 1 - at)
            or length > <uint64_t>(size - at)
            or raw[at + <Py_ssize_t>length - 1] != 0x0A
        ):
            raise TarFormatError(f"pax header at {offset}: record overflows its header")
        end = at + <Py_ssize_t>length
        equals = -1
        for index in range(space + 1, end - 1):
            if raw[index] == 0x3D:
                equals = index
                break
        if equals <= space + 1:
            raise TarFormatError(f"pax header at {offset}: record without KEY=VALUE")
        key = PyUnicode_DecodeUTF8(<const char*>raw + space + 1, equals - space - 1, "surrogateescape")
        records[key] = PyUnicode_DecodeUTF8(
            <const char*>raw + equals + 1, end - 1 - equals - 1, "surrogateescape"
        )
        at = end
    return records


def parse_sparse(bytes block not None, offset, bint extension):
    """The old GNU sparse map of a type 'S' header (4 entries at 386, isextended at 482, real
    size at 483) or of one of its extension blocks (21 entries, isextended at 504). The map
    ends at the first entry whose size field starts with NUL, as in GNU tar's sparse.c."""
    if len(block) != BLOCK:
        raise TarFormatError(f"truncated sparse header at {offset}")
    cdef const unsigned char* raw = <const unsigned char*>(<char*>block)
    cdef Py_ssize_t start = 0 if extension else 386
    cdef Py_ssize_t count = 21 if extension else 4
    cdef Py_ssize_t flag = 504 if extension else 482
    cdef Py_ssize_t index, at
    entries = []
    for index in range(count):
        at = start + 24 * index
        if raw[at + 12] == 0:
            break
        entries.append(
            (
                _number(raw + at, 12, "sparse offset", offset),
                _number(raw + at + 12, 12, "sparse size", offset),
            )
        )
    realsize = 0 if extension else _number(raw + 483, 12, "sparse real size", offset)
    return entries, raw[flag] != 0, realsize
