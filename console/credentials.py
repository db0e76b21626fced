"""API tokens and user passwords: made, hashed and checked; never stored in the clear."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = ["TOKEN_PREFIX", "hash_password", "hash_token", "new_token", "verify_password"]

TOKEN_PREFIX = "srt_"
# A token is 256 random bits: a plain SHA-256 of it cannot be reversed or brute-forced, and is
# fast enough to check on every request (argon2 is for passwords, which people choose).
TOKEN_BYTES = 32
# Longer than any token we make; a longer Authorization value is refused before hashing.
MAX_TOKEN_LENGTH = 256

_PASSWORDS = PasswordHasher()  # argon2id with the library's RFC 9106 low-memory profile


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def hash_password(password: str) -> str:
    return _PASSWORDS.hash(password)


def verify_password(stored: str, password: str) -> bool:
    try:
        return _PASSWORDS.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False
