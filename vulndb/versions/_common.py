"""What every manager's comparison shares: the error it raises and the bound on its input."""

from __future__ import annotations

# Real version strings are short (the longest in Debian's archive is under 100 characters); one
# far longer is hostile, and refusing it bounds every comparison before any parsing starts.
MAX_VERSION_LENGTH = 1024


class InvalidVersion(ValueError):
    """A version string its package manager would refuse, or one past the length bound."""


def encode(version: str, manager: str) -> bytes:
    """`version` as the bytes the manager's C code would see, or InvalidVersion.

    The three tools compare bytes (C strings), so non-ASCII text is compared as its UTF-8
    encoding. A NUL can never reach them (it ends a C string), so it is refused, as are strings
    past MAX_VERSION_LENGTH and text that is not encodable (lone surrogates).
    """
    if not isinstance(version, str):
        raise InvalidVersion(f"{manager} version must be a str, not {type(version).__name__}")
    if len(version) > MAX_VERSION_LENGTH:
        raise InvalidVersion(
            f"{manager} version is {len(version)} characters long (at most {MAX_VERSION_LENGTH})"
        )
    try:
        data = version.encode("utf-8")
    except UnicodeEncodeError as error:
        raise InvalidVersion(f"{manager} version {version!r} is not valid text") from error
    if len(data) > MAX_VERSION_LENGTH:
        raise InvalidVersion(
            f"{manager} version is {len(data)} bytes long (at most {MAX_VERSION_LENGTH})"
        )
    if b"\0" in data:
        raise InvalidVersion(f"{manager} version {version!r} contains a NUL character")
    return data
