"""The tar header/pax parser of image layers, on both implementations, against tarfile and fuzzed."""

from __future__ import annotations

import tarfile
from types import ModuleType

import pytest
from hypothesis import given, seed, settings
from hypothesis import strategies as st

import _native
from _native import TarFormatError

PARSERS = _native.untars()


@pytest.fixture(params=sorted(PARSERS), ids=lambda name: {"cython": "c", "python": "py"}[name])
def parser(request: pytest.FixtureRequest) -> ModuleType:
    return PARSERS[request.param]


def header(info: tarfile.TarInfo, fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    return info.tobuf(fmt, "utf-8", "surrogateescape")[-512:]


def with_checksum(block: bytearray) -> bytes:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\x00 " % sum(block)
    return bytes(block)


def test_native_parser_loaded_with_the_native_core() -> None:
    if _native.IMPLEMENTATION == "cython":
        assert _native.untar.__name__ == "_native._untar"
    assert PARSERS["python"].__name__ == "_native.untar_py"


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT])
def test_fields_agree_with_tarfile(parser: ModuleType, fmt: int) -> None:
    info = tarfile.TarInfo("usr/share/doc/" + "d" * 60 + "/copyright")
    info.size, info.mode, info.uid, info.gid, info.mtime = 1234, 0o4755, 1000, 50, 1_700_000_000
    block = header(info, fmt)
    name, kind, mode, uid, gid, size, mtime, link = parser.parse_header(block, 0)
    parsed = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    assert (name, kind, mode, uid, gid, size, mtime, link) == (
        parsed.name, parsed.type, parsed.mode, parsed.uid, parsed.gid, parsed.size,
        parsed.mtime, parsed.linkname,
    )  # fmt: skip


def test_base256_numbers_and_limits(parser: ModuleType) -> None:
    info = tarfile.TarInfo("big")
    info.uid = 1 << 40  # GNU writes it base-256
    block = header(info, tarfile.GNU_FORMAT)
    assert parser.parse_header(block, 0)[3] == 1 << 40
    negative = bytearray(block)
    negative[124:136] = b"\xff" * 12
    with pytest.raises(TarFormatError, match="header at 7: negative size"):
        parser.parse_header(with_checksum(negative), 7)
    huge = bytearray(block)
    huge[124:136] = b"\x80" + b"\xff" * 11
    with pytest.raises(TarFormatError, match="size is too large"):
        parser.parse_header(with_checksum(huge), 0)


def test_refusals(parser: ModuleType) -> None:
    block = bytearray(header(tarfile.TarInfo("f")))
    with pytest.raises(TarFormatError, match="truncated header at 0"):
        parser.parse_header(bytes(block[:100]), 0)
    bad = bytearray(block)
    bad[0] ^= 1
    with pytest.raises(TarFormatError, match="bad checksum"):
        parser.parse_header(bytes(bad), 0)
    bad = bytearray(block)
    bad[124:136] = b"12 34\x00      "
    with pytest.raises(TarFormatError, match="size field is not octal"):
        parser.parse_header(with_checksum(bad), 0)
    with pytest.raises(TarFormatError, match="header at 0: checksum field is not octal"):
        parser.parse_header(b"this is not a tar" * 30 + b"xx", 0)


def test_ustar_prefix_and_old_directories(parser: ModuleType) -> None:
    name = "a" * 120 + "/file"
    assert parser.parse_header(header(tarfile.TarInfo(name)), 0)[0] == name
    block = bytearray(header(tarfile.TarInfo("dir/")))
    block[156:157] = b"\x00"  # pre-POSIX: a regular file whose name ends in '/'
    assert parser.parse_header(with_checksum(block), 0)[1] == b"5"


def pax_data(**records: str) -> bytes:
    """Records as tarfile writes them: the length counts its own digits."""
    out = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        length = len(body) + 1
        while len(str(length)) + len(body) != length:
            length += 1
        out += str(length).encode() + body
    return out


def test_pax_records(parser: ModuleType) -> None:
    data = pax_data(path="a/" + "é" * 80, linkpath="../x", size="12")
    assert parser.parse_pax(data + bytes(30), 0) == {
        "path": "a/" + "é" * 80, "linkpath": "../x", "size": "12",
    }  # fmt: skip
    assert parser.parse_pax(b"13 key=a=b=c\n", 0) == {"key": "a=b=c"}


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"99 path=x\n", "overflows"),  # longer than the header
        (b"5 path=x\n", "overflows"),  # shorter than its own text
        (b"9 path=xx", "overflows"),  # no newline where the length says
        (b"x9 path=x\n", "malformed record length"),
        (b" 9 path=x\n", "malformed record length"),
        (b"12345678901234567890123 a=b\n", "malformed record length"),
        (b"9 path_x\n", "without KEY=VALUE"),
        (b"7 =xyz\n", "without KEY=VALUE"),
        (b"9 path=x\n\x00\x00junk", "data after NUL padding"),
        (b"99999999999999999999 a", "malformed record length"),
        (b"9999999999999999999 a", "overflows"),
    ],
)
def test_pax_refusals(parser: ModuleType, data: bytes, match: str) -> None:
    with pytest.raises(TarFormatError, match=f"pax header at 3: .*{match}"):
        parser.parse_pax(data, 3)


def _outcome(function: object, *args: object) -> object:
    try:
        return function(*args)  # type: ignore[operator]
    except TarFormatError as error:
        return ("error", str(error))


VALID = header(tarfile.TarInfo("etc/passwd"))


@seed(20261129)
@settings(max_examples=400, deadline=None, database=None)
@given(
    st.lists(st.tuples(st.integers(0, 511), st.integers(0, 255)), max_size=12),
    st.booleans(),
)
def test_header_fuzz_both_agree(edits: list[tuple[int, int]], fix_sum: bool) -> None:
    block = bytearray(VALID)
    for index, value in edits:
        block[index] = value
    data = with_checksum(block) if fix_sum else bytes(block)
    outcomes = {name: _outcome(p.parse_header, data, 5) for name, p in PARSERS.items()}
    assert len({repr(o) for o in outcomes.values()}) == 1, outcomes


@seed(20261129)
@settings(max_examples=400, deadline=None, database=None)
@given(
    st.binary(max_size=64)
    | st.builds(lambda a, b: a + b, st.just(b"12 path=abc\n"), st.binary(max_size=20))
)
def test_pax_fuzz_both_agree(data: bytes) -> None:
    outcomes = {name: _outcome(p.parse_pax, data, 0) for name, p in PARSERS.items()}
    assert len({repr(o) for o in outcomes.values()}) == 1, outcomes
