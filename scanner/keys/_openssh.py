"""OpenSSH's own private-key format ("openssh-key-v1"), as written by ssh-keygen since 7.8.

Layout (OpenSSH PROTOCOL.key): magic, cipher, KDF, KDF options, key count, public key blobs, then
the private section (encrypted unless the cipher is "none"). The fingerprint is SHA-256 over the
public blob: the hex form of what `ssh-keygen -l` prints in base64.
"""

from __future__ import annotations

from ._record import PrivateKey, fingerprint
from ._wire import WireReader

__all__ = ["inspect", "public_blob_facts"]

_MAGIC = b"openssh-key-v1\x00"
# ssh-keygen writes one key per file; a few more is tolerated, thousands is hostile input.
_MAX_KEYS = 8
# AEAD ciphers (chacha20-poly1305, aes-gcm) append their 16-byte tag after the private section.
_MAX_TAG = 16
_TYPES = {
    "ssh-rsa": "rsa",
    "ssh-dss": "dsa",
    "ssh-ed25519": "ed25519",
    "ssh-ed448": "ed448",
    "ecdsa-sha2-nistp256": "ecdsa",
    "ecdsa-sha2-nistp384": "ecdsa",
    "ecdsa-sha2-nistp521": "ecdsa",
    "sk-ssh-ed25519@openssh.com": "ed25519-sk",
    "sk-ecdsa-sha2-nistp256@openssh.com": "ecdsa-sk",
}
_CURVE_BITS = {b"nistp256": 256, b"nistp384": 384, b"nistp521": 521}


def public_blob_facts(blob: bytes) -> tuple[str, str | None, int | None] | None:
    """(wire name, algorithm, bits) of an SSH public key blob; None if it is not one."""
    reader = WireReader(blob)
    name = reader.name()
    if name is None:
        return None
    algorithm = _TYPES.get(name)
    bits: int | None = None
    if name == "ssh-rsa":
        exponent = reader.mpint_bits()
        bits = reader.mpint_bits()
        if exponent is None or bits is None or bits < 512:
            return None
    elif name == "ssh-dss":
        bits = reader.mpint_bits()
        if bits is None or bits < 512:
            return None
    elif name in ("ssh-ed25519", "sk-ssh-ed25519@openssh.com"):
        point = reader.string()
        if point is None or len(point) != 32:
            return None
        bits = 256
    elif name.startswith(("ecdsa-sha2-", "sk-ecdsa-sha2-")):
        curve = reader.string()
        point = reader.string()
        if curve is None or point is None or len(point) < 32:
            return None
        bits = _CURVE_BITS.get(curve)
    return name, algorithm, bits


def inspect(der: bytes, start: int, end: int, line: int) -> PrivateKey | None:
    """Judge a decoded "OPENSSH PRIVATE KEY" body."""
    if not der.startswith(_MAGIC):
        return None
    reader = WireReader(der, len(_MAGIC))
    cipher = reader.name()
    kdf = reader.name()
    options = reader.string()
    count = reader.u32()
    if cipher is None or kdf is None or options is None or count is None:
        return None
    encrypted = cipher != "none"
    if not 1 <= count <= _MAX_KEYS or (not encrypted and kdf != "none"):
        return None
    first = reader.string()
    for _ in range(count - 1):
        if reader.string() is None:
            return None
    private = reader.string()
    if first is None or not private:
        return None
    facts = public_blob_facts(first)
    if facts is None:
        return None
    _name, algorithm, bits = facts
    trailing = reader.remaining()
    if encrypted:
        if trailing > _MAX_TAG or len(private) % 8:
            return None
    elif trailing or not _plain_private_ok(private, first):
        return None
    kind = f"openssh-{algorithm}" if algorithm else "openssh"
    return PrivateKey(kind, encrypted, bits, line, fingerprint(first), start, end, algorithm)


def _plain_private_ok(private: bytes, blob: bytes) -> bool:
    """Unencrypted section: two equal check integers, then a key of the public blob's type."""
    reader = WireReader(private)
    check1, check2 = reader.u32(), reader.u32()
    name = reader.string()
    return (
        check1 is not None
        and check1 == check2
        and name is not None
        and name == WireReader(blob).string()
    )
