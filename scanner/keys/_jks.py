"""Java KeyStore (JKS, magic 0xFEEDFEED) and JCEKS (0xCECECECE) files: findings for PrivateKeyEntry.

Layout (OpenJDK sun.security.provider.JavaKeyStore.engineLoad): magic, version (1 or 2), entry
count, then entries: tag 1 = PrivateKeyEntry (alias, date, protected key, certificate chain),
tag 2 = trustedCertEntry (alias, date, certificate), tag 3 = SecretKeyEntry (JCEKS only: a Java
serialized object whose length is not stated, so reading stops there), then a SHA-1 digest that
must end the file exactly (so a truncated store is no finding). A truststore holds only
tag-2 entries and is not a finding. A stored key is always protected by the key password, so
encrypted is True. The fingerprint is SHA-256 over the SubjectPublicKeyInfo of the first
certificate in the chain — the same value the PEM form of that key gets.
"""

from __future__ import annotations

from . import _der, _derkeys
from ._der import SEQUENCE
from ._record import PrivateKey, fingerprint
from ._wire import WireReader

__all__ = ["MAGICS", "inspect"]

MAGICS = {b"\xfe\xed\xfe\xed": "jks", b"\xce\xce\xce\xce": "jceks"}
_PRIVATE_KEY, _TRUSTED_CERT, _SECRET_KEY = 1, 2, 3
_DIGEST_SIZE = 20
_MAX_CHAIN = 64
_MAX_ENTRIES = 100_000


def inspect(data: bytes) -> PrivateKey | None:
    kind = MAGICS.get(data[:4])
    if kind is None:
        return None
    reader = WireReader(data, 4)
    version, count = reader.u32(), reader.u32()
    if version not in (1, 2) or count is None or count > _MAX_ENTRIES:
        return None
    found: PrivateKey | None = None
    for _ in range(count):
        tag = reader.u32()
        if _utf(reader) is None or reader.take(8) is None:  # alias, creation date
            return None
        if tag == _PRIVATE_KEY:
            entry = _private_entry(reader, version, kind, data)
            if entry is None:
                return None
            found = found or entry
        elif tag == _SECRET_KEY and kind == "jceks":
            return found  # a serialized Java object of unstated length: nothing after it is read
        elif tag != _TRUSTED_CERT or _certificate(reader, version) is None:
            return None
    # The store ends with its SHA-1 integrity digest; anything else is a truncated or damaged file.
    return found if reader.remaining() == _DIGEST_SIZE else None


def _utf(reader: WireReader) -> bytes | None:
    """Java's DataOutput.writeUTF: a 2-byte length and (modified) UTF-8."""
    size = reader.take(2)
    return None if size is None else reader.take(int.from_bytes(size, "big"))


def _certificate(reader: WireReader, version: int) -> bytes | None:
    if version == 2 and _utf(reader) is None:  # certificate type, "X.509"
        return None
    return reader.string()


def _private_entry(reader: WireReader, version: int, kind: str, data: bytes) -> PrivateKey | None:
    protected = reader.string()
    chain = reader.u32()
    if protected is None or chain is None or _derkeys.parse_encrypted_pkcs8(protected) is None:
        return None
    certificates = [_certificate(reader, version) for _ in range(min(chain, _MAX_CHAIN))]
    if chain > _MAX_CHAIN or any(cert is None for cert in certificates):
        return None
    first = certificates[0] if certificates else None
    algorithm, bits, mark = None, None, fingerprint(protected)
    spki = None if first is None else _spki(first)
    if first is not None and spki is not None:
        algorithm, bits = _derkeys.spki_facts(first, spki)
        mark = fingerprint(first[spki.head : spki.end])
    return PrivateKey(kind, True, bits, None, mark, 0, len(data), algorithm)


def _spki(cert: bytes) -> _der.Tlv | None:
    """An X.509 certificate's SubjectPublicKeyInfo: TBS field 6 (7 after a [0] version)."""
    outer = _der.read_whole(cert)
    parts = None if outer is None or outer.tag != SEQUENCE else _der.children(cert, outer, limit=3)
    if not parts or parts[0].tag != SEQUENCE:
        return None
    fields = _der.children(cert, parts[0], limit=16)
    if not fields:
        return None
    index = 6 if fields[0].tag == _der.CONTEXT_0 else 5
    return fields[index] if len(fields) > index and fields[index].tag == SEQUENCE else None
