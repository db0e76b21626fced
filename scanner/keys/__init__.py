"""Private-key detection for check 425: judges marker hits in text and whole binary key stores.

The content engine searches every file once for `MARKERS` and hands each hit here with
`WINDOW_BEFORE` bytes before and `WINDOW_AFTER` bytes after it; `inspect_text` finds the armored
block around the hit and says whether it is a real private key. Small files whose first bytes pass
`is_binary_candidate` go whole (up to `BINARY_MAX_SIZE`) to `inspect_binary`.

Decisions:

- Markers are the specific tails of BEGIN lines, not "-----BEGIN ": certificates, CSRs and public
  keys are never hit, and "PRIVATE KEY-----" alone covers every PEM label (RSA, EC, DSA, PKCS#8,
  ENCRYPTED, OPENSSH, ANY). It also hits the END line; those hits return None, so each block is
  reported once, from its BEGIN line.
- A hit is a finding only when the body proves it: strict base64, then the structure the label
  promises (RSA numbers that multiply out, a curve-sized EC scalar, DSA y = g^x mod p, OpenSSH
  check integers, OpenPGP packet framing, PuTTY's fixed line layout, the SSH2 magic and length).
  Quoted header lines, templates, truncated keys and random base64 all fail one of these.
- The DER reader is ours (`_der`, a few bounded functions), not `cryptography`: scan-root has no
  runtime dependencies; `load_pem_private_key` validates RSA keys with primality tests (about
  250 ms for a 4096-bit key, so hostile input could stall a scan), needs the password to look at an
  encrypted key at all, and does not read PGP, PuTTY, SSH2, PKCS#12 bag lists or JKS.
- Nothing here raises on garbage: every read is bounds-checked and returns None; work is linear
  in the window (integers are capped at 16384 bits, lists and packet counts are capped).
- `PrivateKey` holds no key material: only facts and a SHA-256 fingerprint of the public part
  where it is at hand (SubjectPublicKeyInfo for DER keys, the SSH public blob, the OpenPGP public
  key packet), else of the decoded body.
"""

from __future__ import annotations

from . import _derkeys, _jks, _pem, _pgp, _pkcs12, _putty, _ssh2
from ._record import PrivateKey

__all__ = [
    "BINARY_HEAD_SIZE",
    "BINARY_MAGICS",
    "BINARY_MAX_SIZE",
    "MARKERS",
    "WINDOW_AFTER",
    "WINDOW_BEFORE",
    "PrivateKey",
    "inspect_binary",
    "inspect_text",
    "is_binary_candidate",
]

MARKERS: tuple[bytes, ...] = (_pem.MARKER, *_pgp.MARKERS, _putty.MARKER, _ssh2.MARKER)
# The BEGIN line starts at most ~40 bytes before its marker ("-----BEGIN ENCRYPTED PRIVATE
# KEY-----"); 128 leaves room and lets a caller count lines from the window's start.
WINDOW_BEFORE = 128
# Room for the longest block we judge in full: an OpenPGP export (6.6 KiB for RSA-4096 with an
# RSA-4096 subkey, more with photo ids); PEM keys stop at 12 KiB (16384-bit RSA).
WINDOW_AFTER = _pgp.LIMIT

# What binary key stores start with: JKS and JCEKS magics, and a DER SEQUENCE (PKCS#12, DER keys).
BINARY_MAGICS: tuple[bytes, ...] = (*_jks.MAGICS, b"\x30")
BINARY_HEAD_SIZE = 8
# Keystores are small; Java's cacerts truststore is ~200 KiB, the largest common one.
BINARY_MAX_SIZE = 1024 * 1024

_BY_MARKER = (
    (_pem.MARKER, _pem.inspect),
    (_pgp.MARKERS[0], _pgp.inspect),
    (_pgp.MARKERS[1], _pgp.inspect),
    (_putty.MARKER, _putty.inspect),
    (_ssh2.MARKER, _ssh2.inspect),
)


def inspect_text(window: bytes, hit: int) -> PrivateKey | None:
    """The private key whose BEGIN line holds the marker at `hit`, or None.

    `line`, `start` and `end` are relative to the window.
    """
    if not 0 <= hit < len(window):
        return None
    for marker, inspect in _BY_MARKER:
        if window.startswith(marker, hit):
            return inspect(window, hit)
    return None


def is_binary_candidate(head: bytes) -> bool:
    """Whether a file starting with `head` (BINARY_HEAD_SIZE bytes) may be a binary key store.

    For DER: a SEQUENCE whose first element is a one-byte INTEGER (version 0, 1 or 3), which
    PKCS#12, PKCS#8 and traditional keys start with and certificates do not.
    """
    if head[:4] in _jks.MAGICS:
        return True
    if len(head) < 4 or head[0] != 0x30:
        return False
    first = head[1]
    offset = 2 if first < 0x80 else 2 + (first & 0x7F)
    return head[offset : offset + 2] == b"\x02\x01" and head[offset + 2 : offset + 3] in (
        b"\x00",
        b"\x01",
        b"\x03",
    )


def inspect_binary(data: bytes) -> PrivateKey | None:
    """A PKCS#12, JKS/JCEKS or DER private key file with a key in it, or None."""
    if len(data) > BINARY_MAX_SIZE or not is_binary_candidate(data[:BINARY_HEAD_SIZE]):
        return None
    if data[:4] in _jks.MAGICS:
        return _jks.inspect(data)
    found = _pkcs12.inspect(data)
    if found is not None:
        return found
    for parse in (_derkeys.parse_pkcs8, _derkeys.parse_rsa, _derkeys.parse_ec, _derkeys.parse_dsa):
        judged = parse(data)
        if judged is not None:
            return PrivateKey(
                judged.key_type,
                judged.encrypted,
                judged.bits,
                None,
                judged.fingerprint,
                0,
                len(data),
                judged.algorithm,
            )
    return None
