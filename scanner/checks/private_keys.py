"""Check 425: private keys stored in the image, each validated, located and fingerprinted.

What is flagged: a text private key (PEM RSA/EC/DSA/PKCS#8, encrypted PKCS#8, legacy
`Proc-Type: 4,ENCRYPTED` PEM, OpenSSH, OpenPGP secret key blocks, PuTTY, SSH2 encrypted) whose
body proves it is a real key (see `scanner.keys`), and a PKCS#12 or JKS/JCEKS key store holding a
private-key entry. Not flagged: public keys, certificates, CSRs, `.pub` files, documentation
quoting a BEGIN line, empty templates, truncated keys, trust stores.
A finding gives the path, key type, whether it is encrypted, the line and a SHA-256 fingerprint,
never key material. Keys in package-owned files are still findings — libraries ship test keys,
and a key in an image is readable by anyone with the image — but carry the package and
`vendored: true`, so that a policy can treat them apart.
Why: a private key baked into an image is shared with every copy of the image and every
registry that stores it.
"""

from __future__ import annotations

from collections.abc import Iterator

from _native import Digest, HashResult, WalkEntry

from .. import keys
from ..report import Finding, FindingKind, Problem, ProblemKind, Severity
from .base import Hit, ScanContext

__all__ = ["PrivateKeysCheck"]

ID = "425"
# Bump when a change could turn a clean verdict into a finding (or back): rescan states
# (scanner/state.py) recorded under another version are then dropped.
VERSION = 1
TITLE = "Private keys stored in image"
# Its most severe finding: a SARIF rule's default level must not depend on one run's findings.
WORST = Severity.HIGH

# Binary key stores: found by what they must contain, then judged whole from the captured bytes.
_BINARY_MARKERS = (
    b"\xfe\xed\xfe\xed",  # JKS magic
    b"\xce\xce\xce\xce",  # JCEKS magic
    b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01\x02",  # PKCS#12 pkcs8ShroudedKeyBag OID
    b"\x06\x0b\x2a\x86\x48\x86\xf7\x0d\x01\x0c\x0a\x01\x01",  # PKCS#12 keyBag OID
)
_TEXT_COUNT = len(keys.MARKERS)
_MAGICS = 2  # the first two binary markers are file magics


class PrivateKeysCheck:
    """Judges every marker hit of the content pass; reads nothing itself."""

    id = ID
    version = VERSION
    title = TITLE
    worst: Severity | None = WORST
    markers: tuple[bytes, ...] = (*keys.MARKERS, *_BINARY_MARKERS)
    capture = frozenset(range(len(keys.MARKERS) + len(_BINARY_MARKERS)))

    def prepare(self, context: ScanContext) -> Iterator[Finding | Problem]:
        return iter(())

    def wants(self, entry: WalkEntry) -> int:
        return int(Digest.CONTENT) if entry.size else 0

    def judge(
        self, context: ScanContext, entry: WalkEntry, result: HashResult, hits: list[Hit]
    ) -> Iterator[Finding | Problem]:
        if not hits:
            return
        seen: set[str] = set()
        for marker, start in hits:
            binary = marker >= _TEXT_COUNT
            if binary and marker < _TEXT_COUNT + _MAGICS and start != 0:
                continue  # a key-store magic means something only as the file's first bytes
            window = _window_of(result, start)
            if window is None:
                if binary:
                    continue  # key stores are small: a stray OID in a large file is not one
                yield Problem(
                    kind=ProblemKind.COULD_NOT_VERIFY,
                    message="a private-key marker in a file too large to capture: not validated",
                    path=entry.path,
                    check=ID,
                )
                return
            offset, data = window
            if not binary:
                key = keys.inspect_text(data, start - offset)
                line = None if key is None or key.line is None else _line_of(data, offset, key)
            elif offset == 0 and len(data) == result.size:
                key = keys.inspect_binary(data)
                line = None
            else:
                continue  # a stray magic inside a larger file: not a key store
            if key is None or key.fingerprint in seen:
                continue
            seen.add(key.fingerprint)
            yield self._finding(context, entry, key, line, offset + key.start)

    @staticmethod
    def _finding(
        context: ScanContext, entry: WalkEntry, key: keys.PrivateKey, line: int | None, at: int
    ) -> Finding:
        owner = context.owner(entry.path)
        extra: dict[str, object] = {
            "key_type": key.key_type,
            "encrypted": key.encrypted,
            "fingerprint": key.fingerprint,
            "vendored": owner is not None,
            "offset": at,
        }
        if key.bits is not None:
            extra["bits"] = key.bits
        if key.algorithm is not None:
            extra["algorithm"] = key.algorithm
        if line is not None:
            extra["line"] = line
        severity = Severity.MEDIUM if owner is not None or key.encrypted else Severity.HIGH
        return Finding(
            check=ID,
            title=TITLE,
            severity=severity,
            kind=FindingKind.PRIVATE_KEY,
            path=entry.path,
            package=owner,
            detail=f"{key.key_type}{' (encrypted)' if key.encrypted else ''}"
            + (f", line {line}" if line is not None else ""),
            extra=extra,
        )


def _window_of(result: HashResult, start: int) -> tuple[int, bytes] | None:
    for offset, data in result.windows:
        if offset <= start < offset + len(data):
            return offset, data
    return None


def _line_of(data: bytes, offset: int, key: keys.PrivateKey) -> int | None:
    """The key's 1-based line in the file, when the window starts at the file's first byte."""
    if offset != 0 or key.line is None:
        return None  # counting lines before the window would need bytes we did not keep
    return key.line
