"""SSH Communications Security ("SSH2", also ssh.com / Tectia) private keys, RFC 4716-style armor.

    ---- BEGIN SSH2 ENCRYPTED PRIVATE KEY ----
    Comment: "..."
    <base64>
    ---- END SSH2 ENCRYPTED PRIVATE KEY ----

The label says ENCRYPTED whether or not the key is; the body says: magic 0x3f6ff9eb, total length,
key type ("if-modn{sign{rsa...}}" for RSA, "dl-modp{...}" for DSA), cipher ("none" or
"3des-cbc"), then the key data (PuTTY's import.c is the best public description). There is no
public part to separate cheaply, so the fingerprint is over the decoded body.
"""

from __future__ import annotations

import re

from ._armor import decode_base64, find_block
from ._record import PrivateKey, fingerprint
from ._wire import WireReader

__all__ = ["MARKER", "inspect"]

MARKER = b"BEGIN SSH2 ENCRYPTED PRIVATE KEY ----"
_BEGIN = re.compile(rb"---- BEGIN (SSH2 ENCRYPTED PRIVATE KEY) ----")
_END = b"---- END {} ----"
_LIMIT = 32 * 1024
_MAGIC = 0x3F6FF9EB
_ALGORITHMS = {"if-modn": "rsa", "dl-modp": "dsa"}
# The smallest key it writes (1024-bit DSA) has a few hundred bytes of key data.
_MIN_DATA = 64


def inspect(window: bytes, hit: int) -> PrivateKey | None:
    block = find_block(window, hit, _BEGIN, _END, _LIMIT)
    if block is None or block.cut:
        return None
    body = decode_base64(block.body)
    if body is None:
        return None
    reader = WireReader(body)
    if reader.u32() != _MAGIC or reader.u32() != len(body):
        return None
    key_type = reader.name(256)
    cipher = reader.name()
    data = reader.string()
    if key_type is None or cipher is None or data is None or len(data) < _MIN_DATA:
        return None
    encrypted = cipher != "none"
    if encrypted and len(data) % 8:
        return None
    algorithm = _ALGORITHMS.get(key_type.split("{", 1)[0])
    bits = None if encrypted else _plain_bits(data, algorithm)
    line = window.count(b"\n", 0, block.start) + 1
    return PrivateKey(
        "ssh2", encrypted, bits, line, fingerprint(body), block.start, block.end, algorithm
    )


def _plain_bits(data: bytes, algorithm: str | None) -> int | None:
    """Modulus size of an unencrypted key: data is uint32 length, then ssh.com mpints.

    An ssh.com mpint is a uint32 bit count and the bytes; RSA stores e, d, n, ... (n is third),
    DSA stores a leading zero word, then p, ...
    """
    reader = WireReader(data)
    if reader.u32() is None:
        return None
    skip = {"rsa": 2, "dsa": 0}.get(algorithm or "")
    if skip is None:
        return None
    if algorithm == "dsa" and reader.u32() is None:
        return None
    for _ in range(skip):
        count = reader.u32()
        if count is None or count > 16384 or reader.take((count + 7) // 8) is None:
            return None
    bits = reader.u32()
    return bits if bits is not None and 512 <= bits <= 16384 else None
