"""dpkg version comparison: Debian Policy 5.6.12 as dpkg's lib/dpkg/version.c and parsehelp.c do it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._common import InvalidVersion, encode

# C's isblank(): dpkg trims these around a version and refuses them inside one.
_BLANK = b" \t"
# C's isspace(): strtol() skips these before an epoch's digits.
_SPACE = b" \t\n\v\f\r"
_INT_MAX = 2**31 - 1
_DIGITS = frozenset(b"0123456789")
# Alternating runs: non-digits, then digits (verrevcmp walks a string exactly this way).
_RUNS = re.compile(rb"([^0-9]*)([0-9]*)")


@dataclass(frozen=True, slots=True)
class DpkgVersion:
    """A version as dpkg's parseversion() splits it: epoch, upstream version, revision."""

    epoch: int
    upstream: bytes
    revision: bytes


def _order(byte: int) -> int:
    """verrevcmp's weight of a non-digit byte: `~` first, then the end, letters, the rest."""
    if byte == 0x7E:  # '~'
        return -1
    if 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A:
        return byte
    return byte + 256


# Weights of every ASCII byte, computed once (non-ASCII never gets this far: see parse()).
_ORDER = tuple(_order(byte) for byte in range(128))


def parse(version: str) -> DpkgVersion:
    """Split `version` as dpkg does, raising InvalidVersion where dpkg refuses it.

    dpkg refuses (an error, `dpkg --compare-versions` exits 2): an empty string, embedded blanks,
    an epoch that is empty, not a number, negative or above INT_MAX, nothing after the epoch's
    colon, an empty revision, an empty upstream version. What dpkg only warns about (an upstream
    version not starting with a digit, characters Policy does not allow) it still compares, and
    so do we. One exception: non-ASCII bytes, which dpkg also only warns about, are refused here,
    because dpkg weighs them through a plain `char`, so their order depends on whether the
    platform's char is signed (amd64) or not (arm64); no single answer would be dpkg's.
    """
    data = encode(version, "dpkg")
    if not data.isascii():
        raise InvalidVersion(f"dpkg version {version!r} contains non-ASCII characters")
    text = data.lstrip(_BLANK)
    if not text:
        raise InvalidVersion("dpkg version string is empty")
    end = 0
    while end < len(text) and text[end] not in _BLANK:
        end += 1
    if text[end:].strip(_BLANK):
        raise InvalidVersion(f"dpkg version {version!r} has embedded spaces")
    text = text[:end]
    epoch = 0
    colon = text.find(b":")
    if colon >= 0:
        epoch = _epoch(text[:colon], version)
        text = text[colon + 1 :]
        if not text:
            raise InvalidVersion(f"dpkg version {version!r}: nothing after colon")
    upstream, hyphen, revision = text.rpartition(b"-")
    if not hyphen:
        upstream, revision = text, b""
    elif not revision:
        raise InvalidVersion(f"dpkg version {version!r}: revision number is empty")
    if not upstream:
        raise InvalidVersion(f"dpkg version {version!r}: version number is empty")
    return DpkgVersion(epoch, upstream, revision)


def _epoch(field: bytes, version: str) -> int:
    """The epoch before the first colon, read the way strtol(..., 10) reads it in parseversion()."""
    digits = field.lstrip(_SPACE)
    negative = digits[:1] == b"-"
    if digits[:1] in (b"+", b"-"):
        digits = digits[1:]
    if not digits or digits[0] not in _DIGITS:
        # strtol() converted nothing: dpkg says "epoch in version is empty".
        raise InvalidVersion(f"dpkg version {version!r}: epoch is empty")
    if not digits.isdigit():
        raise InvalidVersion(f"dpkg version {version!r}: epoch is not a number")
    # Compared as a digit string: a 1000-digit epoch must not cost an int conversion.
    significant = digits.lstrip(b"0")
    if negative and significant:
        raise InvalidVersion(f"dpkg version {version!r}: epoch is negative")
    if len(significant) > 10 or (significant and int(significant) > _INT_MAX):
        raise InvalidVersion(f"dpkg version {version!r}: epoch is too big")
    return int(significant or b"0")


def _runs(part: bytes) -> list[tuple[tuple[int, ...], bytes]]:
    """`part` as (non-digit weights, digits without leading zeros) pairs, in order."""
    runs = []
    for letters, digits in _RUNS.findall(part):
        if letters or digits:
            # The trailing 0 stands for what follows a non-digit run (a digit or the end), so
            # "1.0" < "1.0a" (0 < 'a') and "1.0~" < "1.0" (-1 < 0), as in verrevcmp().
            runs.append(((*(_ORDER[byte] for byte in letters), 0), digits.lstrip(b"0")))
    return runs


def _verrevcmp(a: bytes, b: bytes) -> int:
    """dpkg's verrevcmp(): non-digit runs by weight, digit runs by numeric value."""
    if a == b:
        return 0
    runs_a, runs_b = _runs(a), _runs(b)
    empty: tuple[tuple[int, ...], bytes] = ((0,), b"")
    for index in range(max(len(runs_a), len(runs_b))):
        letters_a, digits_a = runs_a[index] if index < len(runs_a) else empty
        letters_b, digits_b = runs_b[index] if index < len(runs_b) else empty
        if letters_a != letters_b:
            return -1 if letters_a < letters_b else 1
        if digits_a != digits_b:
            # Leading zeros are gone: the longer number is the larger, else the first digit
            # that differs decides.
            return -1 if (len(digits_a), digits_a) < (len(digits_b), digits_b) else 1
    return 0


def compare_parsed(a: DpkgVersion, b: DpkgVersion) -> int:
    """dpkg_version_compare(): epoch, then upstream version, then revision; -1, 0 or 1."""
    if a.epoch != b.epoch:
        return -1 if a.epoch < b.epoch else 1
    return _verrevcmp(a.upstream, b.upstream) or _verrevcmp(a.revision, b.revision)


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as `dpkg --compare-versions a lt/eq/gt b` would answer; InvalidVersion else."""
    return compare_parsed(parse(a), parse(b))


# One run that stands for the end of a part: verrevcmp compares a part that has ended as if it
# went on with empty runs, and an empty run weighs 0 then has no digits.
_END_RUN = b"\x00\x02\x00\x00"


def sort_key(version: str) -> bytes:
    """Bytes whose order (memcmp, Python's bytes <) is compare()'s: equal versions give equal
    keys. Each part is its runs: every non-digit weight as two bytes (weight + 2, so `~` is 1
    and the end of a run 2), then the digits' count (two bytes) and the digits; trailing empty
    runs dropped and one end run added, so that a part which ended weighs as verrevcmp pads it.
    InvalidVersion as parse()."""
    parsed = parse(version)
    out = bytearray(parsed.epoch.to_bytes(4, "big"))
    for part in (parsed.upstream, parsed.revision):
        runs = _runs(part)
        while runs and runs[-1] == ((0,), b""):
            runs.pop()
        for weights, digits in runs:
            for weight in weights:
                out += (weight + 2).to_bytes(2, "big")
            out += len(digits).to_bytes(2, "big") + digits
        out += _END_RUN
    return bytes(out)
