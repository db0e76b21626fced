"""Pure-Python twin of _untar.pyx: parse one tar header block and one pax extended header."""

from __future__ import annotations

from .types import TarFormatError

__all__ = ["BLOCK", "Header", "SparseBlock", "parse_header", "parse_pax", "parse_sparse"]

BLOCK = 512
_LIMIT = 1 << 63  # larger numbers (base-256 allows 95 bits) are refused, not carried around
# (name, type, mode, uid, gid, size, mtime, linkname)
Header = tuple[str, bytes, int, int, int, int, int, str]
# (map entries (offset, numbytes), another extension block follows, real size (0 in an extension))
SparseBlock = tuple[list[tuple[int, int]], bool, int]


def _text(field: bytes) -> str:
    # tarfile decodes names as UTF-8 with surrogateescape; so do we, so names round-trip as bytes.
    return field.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _number(field: bytes, what: str, offset: int) -> int:
    """An octal field (NUL-terminated, space-padded), or GNU base-256 when byte 0 has its high bit."""
    if field[0] & 0x80:
        if field[0] == 0xFF:
            raise TarFormatError(f"header at {offset}: negative {what}")
        value = field[0] & 0x7F
        for byte in field[1:]:
            value = (value << 8) | byte
        if value >= _LIMIT:
            raise TarFormatError(f"header at {offset}: {what} is too large")
        return value
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if text.strip(b"01234567"):
        raise TarFormatError(f"header at {offset}: {what} field is not octal")
    return int(text, 8) if text else 0


def parse_header(block: bytes, offset: int) -> Header:
    """(name, type, mode, uid, gid, size, mtime, linkname) of a 512-byte header; checks the sum."""
    if len(block) != BLOCK:
        raise TarFormatError(f"truncated header at {offset}")
    stored = _number(block[148:156], "checksum", offset)
    unsigned = sum(block) - sum(block[148:156]) + 8 * 0x20
    # Some old tars summed signed chars; tarfile accepts either, so do we.
    if stored != unsigned and stored != unsigned - 256 * (
        sum(byte >= 0x80 for byte in block[:148]) + sum(byte >= 0x80 for byte in block[156:])
    ):
        raise TarFormatError(f"header at {offset}: bad checksum (not a tar stream, or corrupt)")
    name = _text(block[0:100])
    if block[257:263] == b"ustar\x00":  # POSIX ustar: a prefix extends the name (not GNU's)
        prefix = _text(block[345:500])
        if prefix:
            name = f"{prefix}/{name}"
    kind = block[156:157]
    if kind == b"\x00" and name.endswith("/"):
        kind = b"5"  # pre-POSIX tars mark directories with a trailing slash only
    return (
        name,
        kind,
        _number(block[100:108], "mode", offset),
        _number(block[108:116], "uid", offset),
        _number(block[116:124], "gid", offset),
        _number(block[124:136], "size", offset),
        _number(block[136:148], "mtime", offset),
        _text(block[157:257]),
    )


def parse_pax(data: bytes, offset: int) -> dict[str, str]:
    """The records of a pax extended header: `LEN KEY=VALUE\\n`, LEN counting the whole record."""
    records: dict[str, str] = {}
    at = 0
    size = len(data)
    while at < size:
        if data[at] == 0:  # NUL padding after the last record (seen in the wild)
            if data[at:].strip(b"\x00"):
                raise TarFormatError(f"pax header at {offset}: data after NUL padding")
            break
        space = data.find(b" ", at, at + 20)
        if space <= at or not data[at:space].isdigit():
            raise TarFormatError(f"pax header at {offset}: malformed record length")
        length = int(data[at:space])
        end = at + length
        if end <= space + 1 or end > size or data[end - 1] != 0x0A:
            raise TarFormatError(f"pax header at {offset}: record overflows its header")
        key, equals, value = data[space + 1 : end - 1].partition(b"=")
        if not equals or not key:
            raise TarFormatError(f"pax header at {offset}: record without KEY=VALUE")
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at = end
    return records


def parse_sparse(block: bytes, offset: int, extension: bool) -> SparseBlock:
    """The old GNU sparse map of a type 'S' header (4 entries at 386, isextended at 482, real
    size at 483) or of one of its extension blocks (21 entries, isextended at 504). The map
    ends at the first entry whose size field starts with NUL, as in GNU tar's sparse.c."""
    if len(block) != BLOCK:
        raise TarFormatError(f"truncated sparse header at {offset}")
    start, count, flag = (0, 21, 504) if extension else (386, 4, 482)
    entries = []
    for index in range(count):
        at = start + 24 * index
        if block[at + 12] == 0:
            break
        entries.append(
            (
                _number(block[at : at + 12], "sparse offset", offset),
                _number(block[at + 12 : at + 24], "sparse size", offset),
            )
        )
    realsize = 0 if extension else _number(block[483:495], "sparse real size", offset)
    return entries, block[flag] != 0, realsize
