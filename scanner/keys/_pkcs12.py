"""PKCS#12 / PFX files (RFC 7292): a finding only when a private-key bag can be seen.

PFX = { version 3, authSafe ContentInfo(data) -> AuthenticatedSafe, macData }. The
AuthenticatedSafe is a list of ContentInfos, each either plain `data` (its SafeContents readable
without the password) or `encryptedData`/`envelopedData` (opaque). `openssl pkcs12 -export` and
Java's keytool both put the key in a plain safe as a pkcs8ShroudedKeyBag (the bag itself is
encrypted, its presence is not) and the certificates in an encrypted safe. So:

- a plain keyBag: contains an unencrypted key (finding, encrypted False);
- a pkcs8ShroudedKeyBag: contains an encrypted key (finding, encrypted True);
- only opaque safes: may or may not contain a key, and is what every truststore looks like
  (certificates only) — not a finding, because a scanner that flags every truststore is ignored.
  Files made with `-keypbe` into an encrypted safe hide their key from us; that is the known gap.

BER indefinite lengths (some Windows exports) are not read: the DER reader refuses them.
"""

from __future__ import annotations

from . import _der, _derkeys
from ._der import CONTEXT_0, OCTET_STRING, OID, SEQUENCE
from ._record import PrivateKey, fingerprint

__all__ = ["inspect"]

_DATA = _der.oid("1.2.840.113549.1.7.1")
_KEY_BAG = _der.oid("1.2.840.113549.1.12.10.1.1")
_SHROUDED_KEY_BAG = _der.oid("1.2.840.113549.1.12.10.1.2")
_SAFE_CONTENTS_BAG = _der.oid("1.2.840.113549.1.12.10.1.6")
# safeContentsBag nests SafeContents; one level is all real files use.
_MAX_NESTING = 2


def inspect(data: bytes) -> PrivateKey | None:
    pfx = _der.read_whole(data)
    items = None if pfx is None or pfx.tag != SEQUENCE else _der.children(data, pfx, limit=3)
    if items is None or len(items) < 2 or _der.uint(data, items[0]) != 3:
        return None
    safe = _data_content(data, items[1])
    infos = None if safe is None else _der.children(data, safe, limit=64)
    if safe is None or safe.tag != SEQUENCE or infos is None:
        return None
    found: PrivateKey | None = None
    for info in infos:
        contents = _data_content(data, info)
        if contents is None:
            continue  # encrypted or enveloped: opaque without the password
        key = _bags(data, contents, _MAX_NESTING)
        if key is not None and (found is None or not key.encrypted):
            found = key  # an unencrypted key is the worse news, so it wins
    return found


def _data_content(data: bytes, info: _der.Tlv) -> _der.Tlv | None:
    """The element inside a ContentInfo of type `data`: [0] EXPLICIT OCTET STRING -> its DER."""
    parts = _der.children(data, info, limit=2) if info.tag == SEQUENCE else None
    if not parts or len(parts) != 2 or parts[0].tag != OID or parts[1].tag != CONTEXT_0:
        return None
    if data[parts[0].start : parts[0].end] != _DATA:
        return None
    octets = _der.read(data, parts[1].start, parts[1].end)
    if octets is None or octets.tag != OCTET_STRING:
        return None
    return _der.read(data, octets.start, octets.end)


def _bags(data: bytes, contents: _der.Tlv, depth: int) -> PrivateKey | None:
    bags = _der.children(data, contents) if contents.tag == SEQUENCE else None
    found: PrivateKey | None = None
    for bag in bags or ():
        parts = _der.children(data, bag, limit=3) if bag.tag == SEQUENCE else None
        if not parts or len(parts) < 2 or parts[0].tag != OID or parts[1].tag != CONTEXT_0:
            continue
        kind = data[parts[0].start : parts[0].end]
        value = _der.read(data, parts[1].start, parts[1].end)
        if value is None:
            continue
        key = None
        inner = data[value.head : value.end]
        if kind == _KEY_BAG:
            judged = _derkeys.parse_pkcs8(inner)
            if judged is not None:
                key = _record(False, judged.bits, judged.fingerprint, judged.algorithm, data)
        elif kind == _SHROUDED_KEY_BAG:
            if _derkeys.parse_encrypted_pkcs8(inner) is not None:
                key = _record(True, None, fingerprint(inner), None, data)
        elif kind == _SAFE_CONTENTS_BAG and depth > 1:
            key = _bags(data, value, depth - 1)
        if key is not None and (found is None or not key.encrypted):
            found = key
    return found


def _record(
    encrypted: bool, bits: int | None, mark: str, algorithm: str | None, data: bytes
) -> PrivateKey:
    return PrivateKey("pkcs12", encrypted, bits, None, mark, 0, len(data), algorithm)
