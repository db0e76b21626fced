"""The PrivateKey record every key-format reader returns, and the one way fingerprints are made."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["PrivateKey", "fingerprint"]


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A private key judged real. Holds no key material: only facts and a SHA-256 fingerprint.

    `line` is the 1-based line of the BEGIN line within the window handed in (the caller adds the
    window's first line); None for binary containers, which have no lines. `start`/`end` are the
    block's offsets in the window (the whole file for binary containers). `algorithm` is what the
    key is ("rsa", "ec", "ed25519", ...) when the container says so, None when encryption hides it.
    """

    key_type: str
    encrypted: bool
    bits: int | None
    line: int | None
    fingerprint: str
    start: int
    end: int
    algorithm: str | None = None


def fingerprint(public_or_body: bytes) -> str:
    """`sha256:` + hex digest: one-way, so it can be printed where the key never may be."""
    return "sha256:" + hashlib.sha256(public_or_body).hexdigest()
