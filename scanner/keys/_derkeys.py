"""DER private keys (PKCS#1 RSA, SEC1 EC, DSA, PKCS#8, encrypted PKCS#8): judged, fingerprinted.

Specs: RFC 8017 A.1.2 (RSAPrivateKey), RFC 5915 (ECPrivateKey), RFC 5958 (PKCS#8 OneAsymmetricKey
and EncryptedPrivateKeyInfo), RFC 3279 / OpenSSL's DSA layout, RFC 8410 (Ed25519, X25519, ...).

Fingerprints are SHA-256 over the SubjectPublicKeyInfo DER whenever the public key is in the
structure or cheap to derive (RSA n/e, EC public point, DSA y = g^x mod p), so they equal
`openssl pkey -pubout -outform DER | sha256sum` and the same key gives the same fingerprint in its
traditional and PKCS#8 forms (and in a JKS certificate chain). Otherwise (encrypted keys, Ed25519
without its optional public key) they are SHA-256 over the whole DER.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import _der
from ._der import BIT_STRING, CONTEXT_0, CONTEXT_1, NULL, OCTET_STRING, OID, SEQUENCE
from ._record import fingerprint

__all__ = [
    "DerKey",
    "curve_bits",
    "parse_dsa",
    "parse_ec",
    "parse_encrypted_pkcs8",
    "parse_pkcs8",
    "parse_rsa",
    "spki_facts",
]

RSA_OID = _der.oid("1.2.840.113549.1.1.1")
RSA_PSS_OID = _der.oid("1.2.840.113549.1.1.10")
EC_OID = _der.oid("1.2.840.10045.2.1")
DSA_OID = _der.oid("1.2.840.10040.4.1")
# RFC 8410: the private key is an OCTET STRING of exactly this many bytes inside the outer one.
_EDWARDS = {
    _der.oid("1.3.101.112"): ("ed25519", 256, 32),
    _der.oid("1.3.101.110"): ("x25519", 256, 32),
    _der.oid("1.3.101.113"): ("ed448", 456, 57),
    _der.oid("1.3.101.111"): ("x448", 448, 56),
}
# Algorithms judged on structure alone (no public part to derive cheaply); GnuTLS ships
# self-test keys of all three GOST kinds inside libgnutls.so.30.
_OTHER = {
    _der.oid("1.2.643.2.2.19"): ("gost2001", 256),
    _der.oid("1.2.643.7.1.1.1.1"): ("gost2012-256", 256),
    _der.oid("1.2.643.7.1.1.1.2"): ("gost2012-512", 512),
}
_CURVES = {
    _der.oid("1.2.840.10045.3.1.1"): 192,  # prime192v1
    _der.oid("1.3.132.0.33"): 224,  # secp224r1
    _der.oid("1.2.840.10045.3.1.7"): 256,  # prime256v1 / P-256
    _der.oid("1.3.132.0.10"): 256,  # secp256k1
    _der.oid("1.3.132.0.34"): 384,  # secp384r1
    _der.oid("1.3.132.0.35"): 521,  # secp521r1
    _der.oid("1.3.36.3.3.2.8.1.1.7"): 256,  # brainpoolP256r1
    _der.oid("1.3.36.3.3.2.8.1.1.11"): 384,  # brainpoolP384r1
    _der.oid("1.3.36.3.3.2.8.1.1.13"): 512,  # brainpoolP512r1
    _der.oid("1.2.156.10197.1.301"): 256,  # SM2
}
# Password-based encryption schemes an EncryptedPrivateKeyInfo names: PKCS#5 (PBES1/PBES2) and
# the PKCS#12 PBE family. Only used where a bare DER file must prove it is one (binary mode).
PBE_PREFIXES = (_der.oid("1.2.840.113549.1.5"), _der.oid("1.2.840.113549.1.12.1"))

MIN_RSA_BITS = 512
MAX_RSA_BITS = 16384
# DSA beyond 8192 bits does not exist in practice; the cap bounds the g^x mod p derivation.
MAX_DSA_BITS = 8192
_RSA_ALGID = _der.encode(SEQUENCE, _der.encode(OID, RSA_OID) + _der.encode(NULL, b""))


@dataclass(frozen=True, slots=True)
class DerKey:
    """What a DER structure proved to be; the armor layer adds where it was."""

    key_type: str
    encrypted: bool
    bits: int | None
    fingerprint: str
    algorithm: str | None


def curve_bits(curve_oid: bytes) -> int | None:
    """Field size of a named curve, None when we do not know the curve."""
    return _CURVES.get(curve_oid)


def _spki(algid: bytes, public_bits_content: bytes) -> bytes:
    """SubjectPublicKeyInfo from an AlgorithmIdentifier and a BIT STRING's content."""
    return _der.encode(SEQUENCE, algid + _der.encode(BIT_STRING, public_bits_content))


def _rsa_numbers(der: bytes, body: _der.Tlv) -> tuple[int, int] | None:
    """(n, e) of an RSAPrivateKey whose numbers hang together; None otherwise."""
    items = _der.children(der, body, limit=16)
    if body.tag != SEQUENCE or items is None or len(items) < 9:
        return None
    values = [_der.uint(der, item) for item in items[:9]]
    version, n, e, d, p, q = values[:6]
    if version not in (0, 1) or n is None or e is None or d is None or p is None or q is None:
        return None
    if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS or e < 3 or e % 2 == 0:
        return None
    # Two-prime keys must multiply out: one cheap product rules out every random body.
    if version == 0 and p * q != n:
        return None
    return n, e


def parse_rsa(der: bytes, algid: bytes = _RSA_ALGID) -> DerKey | None:
    """PKCS#1 RSAPrivateKey: version 0 (two primes) or 1 (multi-prime), n of 512..16384 bits."""
    body = _der.read_whole(der)
    numbers = None if body is None else _rsa_numbers(der, body)
    if numbers is None:
        return None
    n, e = numbers
    public = _der.encode(SEQUENCE, _der.encode_uint(n) + _der.encode_uint(e))
    kind = "rsa-pss" if algid != _RSA_ALGID and RSA_PSS_OID in algid else "rsa"
    return DerKey(kind, False, n.bit_length(), fingerprint(_spki(algid, b"\x00" + public)), kind)


def parse_ec(der: bytes, curve: bytes | None = None) -> DerKey | None:
    """SEC1 ECPrivateKey: version 1, a curve-sized private scalar, optional curve and point."""
    body = _der.read_whole(der)
    items = None if body is None or body.tag != SEQUENCE else _der.children(der, body, limit=4)
    if items is None or len(items) < 2 or _der.uint(der, items[0]) != 1:
        return None
    scalar = items[1]
    size = scalar.end - scalar.start
    if scalar.tag != OCTET_STRING or not 16 <= size <= 72:
        return None
    point: bytes | None = None
    for item in items[2:]:
        inner = _der.read(der, item.start, item.end)
        if inner is None:
            return None
        if item.tag == CONTEXT_0 and inner.tag == OID:
            curve = der[inner.start : inner.end]
        elif item.tag == CONTEXT_1 and inner.tag == BIT_STRING and inner.end - inner.start > 1:
            point = der[inner.start : inner.end]
    bits = None if curve is None else curve_bits(curve)
    # Encoders pad the scalar to the field size; allow a couple of stripped leading zeros.
    if bits is not None and not (bits + 7) // 8 - 2 <= size <= (bits + 7) // 8:
        return None
    if curve is not None and point is not None:
        algid = _der.encode(SEQUENCE, _der.encode(OID, EC_OID) + _der.encode(OID, curve))
        mark = fingerprint(_spki(algid, point))
    else:
        mark = fingerprint(der)
    return DerKey("ec", False, bits if bits is not None else 8 * size, mark, "ec")


def _dsa_key(p: int, q: int, g: int, x: int, y: int | None) -> tuple[int, bytes] | None:
    """(bits, SPKI) of DSA numbers that are consistent, deriving y when the form omits it."""
    if not 512 <= p.bit_length() <= MAX_DSA_BITS or q.bit_length() not in (160, 224, 256):
        return None
    if not (1 < g < p and 0 < x < q):
        return None
    derived = pow(g, x, p)  # bounded: at most an 8192-bit modulus with a 256-bit exponent
    if y is not None and y != derived:
        return None
    params = _der.encode(SEQUENCE, _der.encode_uint(p) + _der.encode_uint(q) + _der.encode_uint(g))
    algid = _der.encode(SEQUENCE, _der.encode(OID, DSA_OID) + params)
    return p.bit_length(), _spki(algid, b"\x00" + _der.encode_uint(derived))


def parse_dsa(der: bytes) -> DerKey | None:
    """OpenSSL's traditional DSA key: SEQUENCE of version 0, p, q, g, y, x."""
    body = _der.read_whole(der)
    items = None if body is None or body.tag != SEQUENCE else _der.children(der, body, limit=8)
    if items is None or len(items) != 6:
        return None
    version, p, q, g, y, x = (_der.uint(der, item) for item in items)
    if version != 0 or p is None or q is None or g is None or y is None or x is None:
        return None
    judged = _dsa_key(p, q, g, x, y)
    if judged is None:
        return None
    return DerKey("dsa", False, judged[0], fingerprint(judged[1]), "dsa")


def _pkcs8_dsa(der: bytes, params: _der.Tlv | None, private: bytes) -> DerKey | None:
    if params is None or params.tag != SEQUENCE:
        return None
    numbers = _der.children(der, params, limit=4)
    inner = _der.read_whole(private)
    if numbers is None or len(numbers) != 3 or inner is None:
        return None
    p, q, g = (_der.uint(der, item) for item in numbers)
    x = _der.uint(private, inner)
    if p is None or q is None or g is None or x is None:
        return None
    judged = _dsa_key(p, q, g, x, None)
    if judged is None:
        return None
    return DerKey("dsa", False, judged[0], fingerprint(judged[1]), "dsa")


def parse_pkcs8(der: bytes) -> DerKey | None:
    """PKCS#8 PrivateKeyInfo / OneAsymmetricKey, judged by the algorithm it names."""
    body = _der.read_whole(der)
    items = None if body is None or body.tag != SEQUENCE else _der.children(der, body, limit=6)
    if items is None or len(items) < 3 or _der.uint(der, items[0]) not in (0, 1):
        return None
    algid, private = items[1], items[2]
    alg = _der.children(der, algid, limit=3) if algid.tag == SEQUENCE else None
    if not alg or alg[0].tag != OID or private.tag != OCTET_STRING:
        return None
    name = der[alg[0].start : alg[0].end]
    params = alg[1] if len(alg) > 1 else None
    inner = der[private.start : private.end]
    algid_der = der[algid.head : algid.end]
    if name in (RSA_OID, RSA_PSS_OID):
        return parse_rsa(inner, algid_der)
    if name == EC_OID:
        curve = der[params.start : params.end] if params is not None and params.tag == OID else None
        return parse_ec(inner, curve)
    if name == DSA_OID:
        return _pkcs8_dsa(der, params, inner)
    public = _public_key_field(der, items[3:])
    if name in _EDWARDS:
        kind, bits, size = _EDWARDS[name]
        scalar = _der.read_whole(inner)
        if scalar is None or scalar.tag != OCTET_STRING or scalar.end - scalar.start != size:
            return None
        mark = fingerprint(_spki(algid_der, public) if public is not None else der)
        return DerKey(kind, False, bits, mark, kind)
    # Other algorithms (GOST, post-quantum, ...): the structure alone must convince.
    if len(inner) < 16:
        return None
    if name in _OTHER:
        kind, bits = _OTHER[name]
        return DerKey(kind, False, bits, fingerprint(der), kind)
    return DerKey("pkcs8", False, None, fingerprint(der), None)


def _public_key_field(der: bytes, rest: list[_der.Tlv]) -> bytes | None:
    """OneAsymmetricKey's optional `[1] publicKey` (RFC 5958), as BIT STRING content."""
    for item in rest:
        if item.tag == 0x81 and item.end - item.start > 1:
            return der[item.start : item.end]
    return None


def parse_encrypted_pkcs8(der: bytes, require_pbe: bool = False) -> DerKey | None:
    """EncryptedPrivateKeyInfo: an AlgorithmIdentifier and an encrypted blob big enough for a key.

    The smallest PKCS#8 key (X25519, 48 bytes) encrypts to at least 48; below 32 is no key.
    """
    body = _der.read_whole(der)
    items = None if body is None or body.tag != SEQUENCE else _der.children(der, body, limit=3)
    if items is None or len(items) != 2 or items[0].tag != SEQUENCE:
        return None
    alg = _der.children(der, items[0], limit=3)
    blob = items[1]
    if not alg or alg[0].tag != OID or blob.tag != OCTET_STRING or blob.end - blob.start < 32:
        return None
    name = der[alg[0].start : alg[0].end]
    if require_pbe and not name.startswith(PBE_PREFIXES):
        return None
    return DerKey("pkcs8", True, None, fingerprint(der), None)


def spki_facts(der: bytes, spki: _der.Tlv) -> tuple[str | None, int | None]:
    """(algorithm, bits) of a SubjectPublicKeyInfo, as far as it can be read cheaply."""
    items = _der.children(der, spki, limit=3) if spki.tag == SEQUENCE else None
    if items is None or len(items) != 2 or items[0].tag != SEQUENCE:
        return None, None
    alg = _der.children(der, items[0], limit=3)
    if not alg or alg[0].tag != OID:
        return None, None
    name = der[alg[0].start : alg[0].end]
    if name in (RSA_OID, RSA_PSS_OID) and items[1].tag == BIT_STRING:
        public = _der.read(der, items[1].start + 1, items[1].end)
        numbers = None if public is None else _der.children(der, public, limit=3)
        n = _der.uint(der, numbers[0]) if numbers else None
        return "rsa", None if n is None else n.bit_length()
    if name == EC_OID and len(alg) > 1 and alg[1].tag == OID:
        return "ec", curve_bits(der[alg[1].start : alg[1].end])
    if name in _EDWARDS:
        return _EDWARDS[name][0], _EDWARDS[name][1]
    if name == DSA_OID:
        return "dsa", None
    return None, None
