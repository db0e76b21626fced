"""ASCII-armored OpenPGP secret keys ("-----BEGIN PGP PRIVATE KEY BLOCK-----"), RFC 4880 / RFC 9580.

The armor's base64 holds packets; a secret key export starts with a Secret-Key packet (tag 5),
followed by user ids, signatures and Secret-Subkey packets (tag 7). We read packet headers only to
find the first secret packet that really holds secret material (GnuPG writes "gnu-dummy" stubs for
keys kept on a smartcard or stripped by --export-secret-subkeys), then its public part and its
S2K usage octet: 0 means the secret numbers follow in the clear. The fingerprint is SHA-256 over
the primary key's public part (the bytes an OpenPGP fingerprint is computed over).
"""

from __future__ import annotations

import re

from ._armor import decode_base64, find_block
from ._derkeys import curve_bits
from ._record import PrivateKey, fingerprint

__all__ = ["MARKERS", "inspect"]

MARKERS = (b"PGP PRIVATE KEY BLOCK-----", b"PGP SECRET KEY BLOCK-----")
_BEGIN = re.compile(rb"-----BEGIN (PGP (?:PRIVATE|SECRET) KEY BLOCK)-----")
_END = b"-----END {}-----"
# A 4096-bit RSA key with a 4096-bit subkey exports to 6.6 KiB; keyrings with photo ids grow
# larger. Past this the block is judged on the packets that fit (the first one is the key).
LIMIT = 64 * 1024
_MAX_PACKETS = 4096
_SECRET_KEY, _SECRET_SUBKEY = 5, 7
_ALGORITHMS = {
    1: "rsa",
    2: "rsa",
    3: "rsa",
    16: "elgamal",
    17: "dsa",
    18: "ecdh",
    19: "ecdsa",
    20: "elgamal",
    22: "eddsa",
    25: "x25519",
    26: "x448",
    27: "ed25519",
    28: "ed448",
}
# RFC 9580 native key sizes (algorithms 25..28 carry raw keys, not MPIs).
_NATIVE = {25: 32, 26: 56, 27: 32, 28: 57}
# Curve OIDs used by OpenPGP beyond the X.509 ones (content bytes, as in the packet).
_PGP_CURVES = {
    bytes.fromhex("2b06010401da470f01"): 256,  # Ed25519 (legacy EdDSA)
    bytes.fromhex("2b060104019755010501"): 256,  # Curve25519 (legacy ECDH)
}


def inspect(window: bytes, hit: int) -> PrivateKey | None:
    block = find_block(window, hit, _BEGIN, _END, LIMIT)
    if block is None:
        return None
    data = decode_base64(block.body)
    if data is None:
        return None
    judged = _judge(data, complete=not block.cut)
    if judged is None:
        return None
    encrypted, bits, algorithm, public = judged
    line = window.count(b"\n", 0, block.start) + 1
    return PrivateKey(
        "pgp", encrypted, bits, line, fingerprint(public), block.start, block.end, algorithm
    )


def _packets(data: bytes, complete: bool) -> list[tuple[int, int, int]]:
    """(tag, body start, body end) of the packets, stopping at the first malformed header.

    When the block was cut by the window, the last packet may be incomplete and is dropped.
    """
    out: list[tuple[int, int, int]] = []
    pos = 0
    while pos < len(data) and len(out) < _MAX_PACKETS:
        header = _header(data, pos)
        if header is None:
            break
        end = header[2]
        if end > len(data):
            break
        out.append(header)
        pos = end
    if complete and pos != len(data):
        return []  # a complete export is packets end to end; anything else is damaged or not PGP
    return out


def _header(data: bytes, pos: int) -> tuple[int, int, int] | None:
    first = data[pos]
    if not first & 0x80:
        return None
    pos += 1
    if first & 0x40:  # new format (RFC 4880 4.2.2)
        tag = first & 0x3F
        if pos >= len(data):
            return None
        octet = data[pos]
        if octet < 192:
            return tag, pos + 1, pos + 1 + octet
        if octet < 224:
            if pos + 2 > len(data):
                return None
            return tag, pos + 2, pos + 2 + ((octet - 192) << 8) + data[pos + 1] + 192
        if octet == 255:
            if pos + 5 > len(data):
                return None
            return tag, pos + 5, pos + 5 + int.from_bytes(data[pos + 1 : pos + 5], "big")
        return None  # partial body lengths never frame key packets
    tag = (first >> 2) & 0x0F
    size = (1, 2, 4, 0)[first & 0x03]
    if size == 0 or pos + size > len(data):
        return None
    return tag, pos + size, pos + size + int.from_bytes(data[pos : pos + size], "big")


def _judge(data: bytes, complete: bool) -> tuple[bool, int | None, str | None, bytes] | None:
    packets = _packets(data, complete)
    if not packets or packets[0][0] != _SECRET_KEY:
        return None
    primary = _secret_packet(data[packets[0][1] : packets[0][2]])
    if primary is None:
        return None
    public = primary[3]
    for tag, start, end in packets:
        if tag not in (_SECRET_KEY, _SECRET_SUBKEY):
            continue
        judged = _secret_packet(data[start:end])
        if judged is not None and not judged[4]:
            encrypted, bits, algorithm, _public, _stub = judged
            return encrypted, bits, algorithm, public
    return None  # only stubs: the secret numbers are elsewhere (a smartcard)


def _secret_packet(body: bytes) -> tuple[bool, int | None, str | None, bytes, bool] | None:
    """(encrypted, bits, algorithm, public part, is_stub) of a Secret-(Sub)Key packet body."""
    if len(body) < 8:
        return None
    version = body[0]
    if version in (5, 6):
        # v5/v6 state the public material's length (RFC 9580 5.5.2).
        algorithm = body[5]
        size = int.from_bytes(body[6:10], "big")
        stop = 10 + size
        bits = _material_bits(body, 10, algorithm)
    elif version in (3, 4):
        header = 8 if version == 3 else 6  # v3 carries a 2-byte validity period
        algorithm = body[header - 1]
        parsed = _material(body, header, algorithm)
        if parsed is None:
            return None
        stop, bits = parsed
    else:
        return None
    if algorithm not in _ALGORITHMS or stop >= len(body):
        return None
    usage = body[stop]
    secret = body[stop + 1 :]
    # GnuPG's stub S2K (type 101, "GNU", mode 1 or 2) says the secret is not here.
    stub = usage in (254, 255) and b"GNU" in secret[:10]
    if not stub and len(secret) < 16:
        return None
    return usage != 0, bits, _ALGORITHMS[algorithm], body[:stop], stub


def _mpi(body: bytes, pos: int) -> tuple[int, int] | None:
    """(end, bit count) of the MPI at `pos`."""
    if pos + 2 > len(body):
        return None
    bits = int.from_bytes(body[pos : pos + 2], "big")
    end = pos + 2 + (bits + 7) // 8
    return None if end > len(body) or bits > 16384 else (end, bits)


def _material(body: bytes, pos: int, algorithm: int) -> tuple[int, int | None] | None:
    """(end, bits) of v3/v4 public key material."""
    if algorithm in _NATIVE:
        end = pos + _NATIVE[algorithm]
        return (end, _NATIVE[algorithm] * 8) if end <= len(body) else None
    counts = {1: 2, 2: 2, 3: 2, 16: 3, 20: 3, 17: 4}
    if algorithm in counts:
        first = _mpi(body, pos)
        if first is None:
            return None
        end = first[0]
        for _ in range(counts[algorithm] - 1):
            nxt = _mpi(body, end)
            if nxt is None:
                return None
            end = nxt[0]
        return end, first[1]
    if algorithm in (18, 19, 22):
        if pos >= len(body) or not 0 < body[pos] < 0xFF:
            return None
        oid_end = pos + 1 + body[pos]
        point = _mpi(body, oid_end)
        if point is None:
            return None
        end = point[0]
        if algorithm == 18:  # ECDH adds KDF parameters: a length octet and that many bytes
            if end >= len(body):
                return None
            end += 1 + body[end]
        oid = body[pos + 1 : oid_end]
        return end, curve_bits(oid) or _PGP_CURVES.get(oid)
    return None


def _material_bits(body: bytes, pos: int, algorithm: int) -> int | None:
    if algorithm in _NATIVE:
        return _NATIVE[algorithm] * 8
    parsed = _material(body, pos, algorithm)
    return None if parsed is None else parsed[1]
