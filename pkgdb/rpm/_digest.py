"""Checks a stored rpm header against its own digest tags, over its immutable region, as rpm does.

A header rpm installs keeps the package's original header as its immutable region: the first
index entry is a region tag (HEADERIMMUTABLE 63; 62 and 61 in older headers) whose data is a
16-byte trailer entry, at the end of the region's data, whose negative offset gives the
region's entry count `ril` (`-offset / 16`); the region's data is `rdl` = trailer offset + 16
bytes. Entries added at install (FILESTATES, INSTALLTIME, the signature tags) follow it.
The package's SHA256HEADER (273) and SHA1HEADER (269), merged in from its signature header,
are hex digests of: the header magic `8e ad e8 01 00 00 00 00`, `ril` and `rdl` (big-endian
u32), the region's `ril` index entries, and its `rdl` data bytes (rpm `hdrblobDigestUpdate`,
checked at every read by `headerCheck` in rpm >= 4.14). Any change inside the region — a
renamed BASENAMES tag, a digest, mode or flag of a file — breaks it. Entries outside the region
(FILESTATES) are not covered: rpm cannot check them either; but one that replaces a region
entry of a tag rpm -V compares is reported, since it would bypass the digest.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from typing import Final

from ._header import Header

__all__ = ["check"]

_MAGIC: Final = bytes.fromhex("8eade80100000000")
_REGION_TAGS: Final = frozenset((61, 62, 63))
_SHA1HEADER: Final = 269
_SHA256HEADER: Final = 273
_BIN: Final = 7
_ENTRY = struct.Struct(">IIiI")
# What rpm -V compares of a file (sizes, modes, digests, link targets, flags, verify flags, the
# digest algorithm), and the package's identity. rpm itself replaces only paths (relocation)
# and adds install-time tags (FILESTATES, INSTALLTIME) after the region.
_VERIFIED_TAGS: Final = frozenset(
    (1000, 1001, 1002, 1003, 1028, 1030, 1035, 1036, 1037, 1045, 5008, 5011)
)  # tag, type, offset (signed: the trailer's is negative), count


def check(blob: bytes, header: Header) -> str | None:
    """Why the header's digest does not hold (None: it holds, or the header carries none);
    HeaderError if a digest tag itself is malformed.

    `blob` is the header `parse()` accepted (so its preamble and index are well formed).
    """
    sha256 = header.string(_SHA256HEADER)
    sha1 = header.string(_SHA1HEADER)
    if sha256 is None and sha1 is None:
        return None
    region = _region(blob)
    if isinstance(region, str):
        return f"header digest not checkable: {region}"
    ril, rdl = region
    il = struct.unpack_from(">I", blob)[0]
    # An entry after the region replaces the region's entry of the same tag (rpm's dribbles):
    # for what rpm -V compares, that would bypass the digest.
    inside = {tag for (tag,) in struct.iter_unpack(">I12x", blob[8 : 8 + 16 * ril])}
    outside = {tag for (tag,) in struct.iter_unpack(">I12x", blob[8 + 16 * ril : 8 + 16 * il])}
    replaced = sorted(inside & outside & _VERIFIED_TAGS)
    if replaced:
        return f"tags {replaced} of the immutable header region are replaced after it"
    store = 8 + 16 * il
    parts = (struct.pack(">II", ril, rdl), blob[8 : 8 + 16 * ril], blob[store : store + rdl])
    if sha256 is not None:
        return _compare("SHA256HEADER", hashlib.sha256, sha256, parts)
    if sha1 is None:
        return None
    message = _compare("SHA1HEADER", hashlib.sha1, sha1, parts)
    # rpm 4.1's verifyDigest hashed the region without the magic: accept what it wrote too.
    if message is not None and _compare("SHA1HEADER", hashlib.sha1, sha1, parts, b"") is None:
        return None
    return message


def _compare(
    name: str,
    algorithm: Callable[[], hashlib._Hash],
    recorded: bytes,
    parts: tuple[bytes, bytes, bytes],
    magic: bytes = _MAGIC,
) -> str | None:
    digest = algorithm()
    digest.update(magic)
    for part in parts:
        digest.update(part)
    if digest.hexdigest().encode() == recorded.lower():
        return None
    return (
        f"{name} does not match the immutable header region: "
        "the stored header is damaged or was altered after install"
    )


def _region(blob: bytes) -> tuple[int, int] | str:
    """(ril, rdl) of the immutable region, or why there is no usable one."""
    il, dl = struct.unpack_from(">II", blob)
    tag, type_, offset, count = _ENTRY.unpack_from(blob, 8)
    if tag not in _REGION_TAGS:
        return f"the first entry is tag {tag}, not an immutable region"
    if type_ != _BIN or count != 16 or offset < 0 or offset + 16 > dl:
        return "the region entry is malformed"
    store = 8 + 16 * il
    trailer_tag, trailer_type, trailer_offset, trailer_count = _ENTRY.unpack_from(
        blob, store + offset
    )
    ril, remainder = divmod(-trailer_offset, 16)
    if (
        trailer_tag not in _REGION_TAGS
        or trailer_type != _BIN
        or trailer_count != 16
        or remainder
        or not 0 < ril <= il
    ):
        return "the region trailer is malformed"
    return ril, offset + 16
