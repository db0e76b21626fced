"""PuTTY private key files (.ppk), versions 2 and 3 (PuTTY's sshpubk.c documents the layout).

    PuTTY-User-Key-File-3: ssh-ed25519      the algorithm, repeated inside the public blob
    Encryption: none | aes256-cbc
    Comment: ...
    Public-Lines: N                          N lines of base64: the SSH public key blob
    [Key-Derivation / Argon2-* lines]        version 3, when encrypted
    Private-Lines: M                         M lines of base64: the private part
    Private-MAC: hex                         HMAC-SHA-256 (v3) or HMAC-SHA-1 (v2)

Every line must be where the format puts it, so a quoted first line in documentation is not a
key. The fingerprint is SHA-256 over the public blob, as for OpenSSH keys.
"""

from __future__ import annotations

import re

from ._armor import decode_base64
from ._openssh import public_blob_facts
from ._record import PrivateKey, fingerprint

__all__ = ["MARKER", "inspect"]

MARKER = b"PuTTY-User-Key-File-"
_FIRST = re.compile(rb"PuTTY-User-Key-File-([23]): ([\x21-\x7e]{1,64})\r?\n")
_FIELD = re.compile(rb"([A-Za-z0-9-]{1,32}): ?([^\r\n]*)\r?\n")
_B64_LINE = re.compile(rb"([A-Za-z0-9+/=]{1,128})\r?\n")
# A 16384-bit RSA key needs about 45 private lines; a count far above that is not a real file.
_MAX_LINES = 256
_MAC_HEX = {b"2": 40, b"3": 64}
_V3_KDF_FIELDS = (
    b"Key-Derivation",
    b"Argon2-Memory",
    b"Argon2-Passes",
    b"Argon2-Parallelism",
    b"Argon2-Salt",
)


class _Cursor:
    """Reads the file's lines in order from the window, never past its end."""

    def __init__(self, window: bytes, pos: int) -> None:
        self.window = window
        self.pos = pos

    def field(self, name: bytes) -> bytes | None:
        match = _FIELD.match(self.window, self.pos)
        if match is None or match.group(1) != name:
            return None
        self.pos = match.end()
        return match.group(2)

    def base64_lines(self, count: bytes | None) -> bytes | None:
        if count is None or not count.isdigit() or not 0 < int(count) <= _MAX_LINES:
            return None
        parts = []
        for _ in range(int(count)):
            match = _B64_LINE.match(self.window, self.pos)
            if match is None:
                return None
            parts.append(match.group(1))
            self.pos = match.end()
        return decode_base64(b"".join(parts))


def inspect(window: bytes, hit: int) -> PrivateKey | None:
    first = _FIRST.match(window, hit)
    if first is None or (hit and window[hit - 1] not in b"\r\n"):
        return None
    version, algorithm_name = first.group(1), first.group(2)
    cursor = _Cursor(window, first.end())
    encryption = cursor.field(b"Encryption")
    if encryption not in (b"none", b"aes256-cbc") or cursor.field(b"Comment") is None:
        return None
    public = cursor.base64_lines(cursor.field(b"Public-Lines"))
    if public is None:
        return None
    facts = public_blob_facts(public)
    if facts is None or facts[0].encode() != algorithm_name:
        return None
    encrypted = encryption != b"none"
    if version == b"3" and encrypted and any(cursor.field(f) is None for f in _V3_KDF_FIELDS):
        return None
    private = cursor.base64_lines(cursor.field(b"Private-Lines"))
    if private is None or (encrypted and len(private) % 16):
        return None
    mac = cursor.field(b"Private-MAC")
    if mac is None or len(mac) != _MAC_HEX[version] or not _is_hex(mac):
        return None
    _name, algorithm, bits = facts
    line = window.count(b"\n", 0, hit) + 1
    return PrivateKey(
        "putty", encrypted, bits, line, fingerprint(public), hit, cursor.pos, algorithm
    )


def _is_hex(text: bytes) -> bool:
    return all(c in b"0123456789abcdefABCDEF" for c in text)
