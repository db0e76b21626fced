"""PEM private keys ("-----BEGIN ... PRIVATE KEY-----"): PKCS#1, SEC1, DSA, PKCS#8, encrypted forms.

RFC 7468 names the labels; RFC 1421 the legacy `Proc-Type: 4,ENCRYPTED` / `DEK-Info` headers that
OpenSSL still writes for `openssl rsa -traditional -aes128`. An OPENSSH label is handed on.
"""

from __future__ import annotations

import re

from . import _derkeys, _openssh
from ._armor import Block, decode_base64, find_block
from ._derkeys import DerKey
from ._record import PrivateKey, fingerprint

__all__ = ["MARKER", "inspect"]

MARKER = b"PRIVATE KEY-----"
_BEGIN = re.compile(rb"-----BEGIN ((?:[A-Z0-9]{1,12} ){0,3}PRIVATE KEY)-----")
_END = b"-----END {}-----"
# The largest text key (16384-bit RSA, PKCS#8) is about 12 KiB of PEM.
_LIMIT = 32 * 1024
_TRADITIONAL = {
    b"RSA PRIVATE KEY": ("rsa", _derkeys.parse_rsa),
    b"EC PRIVATE KEY": ("ec", _derkeys.parse_ec),
    b"DSA PRIVATE KEY": ("dsa", _derkeys.parse_dsa),
}
# DEK-Info ciphers are all CBC block ciphers; the IV is one block, written in hex (RFC 1423).
_DEK_INFO = re.compile(rb"([A-Z0-9-]{3,32}),([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})")
# The smallest traditional key (a P-192 SEC1 key) is about 100 bytes of DER.
_MIN_LEGACY_BODY = 64


def inspect(window: bytes, hit: int) -> PrivateKey | None:
    block = find_block(window, hit, _BEGIN, _END, _LIMIT)
    if block is None or block.cut:
        return None
    der = decode_base64(block.body)
    if der is None:
        return None
    if block.label == b"OPENSSH PRIVATE KEY":
        return _openssh.inspect(der, block.start, block.end, _line(window, block))
    judged = _judge(block, der)
    if judged is None:
        return None
    return PrivateKey(
        judged.key_type,
        judged.encrypted,
        judged.bits,
        _line(window, block),
        judged.fingerprint,
        block.start,
        block.end,
        judged.algorithm,
    )


def _line(window: bytes, block: Block) -> int:
    return window.count(b"\n", 0, block.start) + 1


def _judge(block: Block, der: bytes) -> DerKey | None:
    traditional = _TRADITIONAL.get(block.label)
    if block.headers.get(b"proc-type", b"").replace(b" ", b"") == b"4,ENCRYPTED":
        return _legacy(block, der, traditional[0] if traditional else None)
    if traditional is not None:
        return traditional[1](der)
    if block.label == b"PRIVATE KEY":
        return _derkeys.parse_pkcs8(der)
    if block.label == b"ENCRYPTED PRIVATE KEY":
        return _derkeys.parse_encrypted_pkcs8(der)
    # Other labels ("ANY PRIVATE KEY", vendor variants): accept whichever structure fits.
    for parse in (_derkeys.parse_pkcs8, _derkeys.parse_rsa, _derkeys.parse_ec, _derkeys.parse_dsa):
        judged = parse(der)
        if judged is not None:
            return judged
    return _derkeys.parse_encrypted_pkcs8(der, require_pbe=True)


def _legacy(block: Block, der: bytes, kind: str | None) -> DerKey | None:
    """A traditional key encrypted under RFC 1421 headers: only its shape can be judged."""
    dek = _DEK_INFO.fullmatch(block.headers.get(b"dek-info", b"").strip())
    if dek is None or len(der) < _MIN_LEGACY_BODY or len(der) % 8:
        return None
    return DerKey(kind or "pem", True, None, fingerprint(der), kind)
