"""A tiny bounded DER reader and writer: just enough ASN.1 to judge and fingerprint keys."""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "BIT_STRING",
    "CONTEXT_0",
    "CONTEXT_1",
    "INTEGER",
    "NULL",
    "OCTET_STRING",
    "OID",
    "SEQUENCE",
    "Tlv",
    "children",
    "encode",
    "encode_uint",
    "oid",
    "read",
    "read_whole",
    "uint",
]

SEQUENCE = 0x30
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
CONTEXT_0 = 0xA0
CONTEXT_1 = 0xA1

# 16384-bit RSA is the largest key anyone generates; anything bigger is not a key we must judge,
# and capping it keeps int() conversions and p*q checks cheap on hostile input.
MAX_INT_BYTES = 2049
# A key structure has a dozen elements; a PKCS#12 safe a few hundred bags at most.
MAX_CHILDREN = 512


class Tlv(NamedTuple):
    """One element: its tag, where it begins, and where its content lies (no copy is made)."""

    tag: int
    head: int
    start: int
    end: int


def read(buf: bytes, pos: int, limit: int) -> Tlv | None:
    """The element at `pos`, which must end by `limit`; None on anything but definite-length DER.

    Indefinite lengths (BER) and multi-byte tags are refused: no key format we judge needs them.
    """
    if pos + 2 > limit:
        return None
    head = pos
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        return None
    first = buf[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        count = first & 0x7F
        if count == 0 or count > 4 or pos + count > limit:
            return None
        length = int.from_bytes(buf[pos : pos + count], "big")
        pos += count
    if pos + length > limit:
        return None
    return Tlv(tag, head, pos, pos + length)


def read_whole(buf: bytes) -> Tlv | None:
    """The one element that spans all of `buf` (trailing bytes mean truncation or junk)."""
    tlv = read(buf, 0, len(buf))
    if tlv is None or tlv.end != len(buf):
        return None
    return tlv


def children(buf: bytes, parent: Tlv, limit: int = MAX_CHILDREN) -> list[Tlv] | None:
    """The elements that make up `parent`'s content exactly, or None if they do not."""
    out: list[Tlv] = []
    pos = parent.start
    while pos < parent.end:
        if len(out) >= limit:
            return None
        tlv = read(buf, pos, parent.end)
        if tlv is None:
            return None
        out.append(tlv)
        pos = tlv.end
    return out


def uint(buf: bytes, tlv: Tlv) -> int | None:
    """A non-negative INTEGER's value, or None (wrong tag, empty, negative, or too long)."""
    size = tlv.end - tlv.start
    if tlv.tag != INTEGER or size == 0 or size > MAX_INT_BYTES or buf[tlv.start] & 0x80:
        return None
    return int.from_bytes(buf[tlv.start : tlv.end], "big")


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def encode(tag: int, content: bytes) -> bytes:
    """One DER element."""
    return bytes([tag]) + _length(len(content)) + content


def encode_uint(value: int) -> bytes:
    """A non-negative INTEGER in canonical DER (a leading zero when the top bit is set)."""
    return encode(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def oid(dotted: str) -> bytes:
    """An OBJECT IDENTIFIER's content bytes, so tables can be written in dotted form."""
    arcs = [int(arc) for arc in dotted.split(".")]
    out = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return bytes(out)
