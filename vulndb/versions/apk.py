"""apk version comparison: apk-tools' src/version.c rules (digits, letter, suffixes, ~hash, -rN)."""

from __future__ import annotations

import enum

from ._common import InvalidVersion, encode

# apk parses numbers into a uint64_t that silently wraps; its comparison sees the wrapped value.
_WRAP = 2**64


class Token(enum.IntEnum):
    """What a part of an apk version is, in the order the grammar allows them.

    `digit{.digit}...{letter}{_suffix{number}}...{~hash}{-rN}`: a part may only follow parts of
    a lower kind (a few may repeat), and when two versions agree up to where one has a part the
    other lacks, the kind of that part decides (a higher kind sorts lower, see compare()).
    """

    INITIAL_DIGIT = 0
    DIGIT = 1
    LETTER = 2
    SUFFIX = 3
    SUFFIX_NO = 4
    COMMIT_HASH = 5
    REVISION_NO = 6
    END = 7
    INVALID = 8


class Suffix(enum.IntEnum):
    """The `_suffix` words in their order; those below NONE are pre-releases."""

    ALPHA = 1
    BETA = 2
    PRE = 3
    RC = 4
    NONE = 5
    CVS = 6
    SVN = 7
    GIT = 8
    HG = 9
    P = 10


_SUFFIXES = {member.name.lower().encode(): member for member in Suffix if member is not Suffix.NONE}
_DIGITS = frozenset(b"0123456789")
_LOWER = frozenset(b"abcdefghijklmnopqrstuvwxyz")
_HEX = frozenset(b"0123456789abcdef")


def _span(data: bytes, start: int, allowed: frozenset[int]) -> int:
    """End of the run from `start` of `allowed` bytes (apk_blob_spn())."""
    end = start
    while end < len(data) and data[end] in allowed:
        end += 1
    return end


def _encode(version: str) -> bytes:
    data = encode(version, "apk")
    if not data.isascii():
        # apk-tools' character tables (src/ctype.c) have treated bytes >= 0x80 in two ways
        # across its releases (members of every class, then of none), so its order of such
        # versions depends on the release; no single answer would be apk's, and no Alpine
        # package has one.
        raise InvalidVersion(f"apk version {version!r} contains non-ASCII characters")
    return data


class _Tokens:
    """A cursor over one version, producing its parts one at a time as apk's tokenizer does."""

    __slots__ = ("data", "number", "pos", "suffix", "token", "value")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0
        self.token = Token.INITIAL_DIGIT
        self.suffix = Suffix.NONE
        self.number = 0
        self.value = b""
        self._digits()

    def _digits(self) -> None:
        start = self.pos
        end = start
        while end < len(self.data) and self.data[end] in _DIGITS:
            end += 1
        self.value = self.data[start:end]
        self.pos = end
        if not self.value:
            self.token = Token.INVALID
            return
        # Digit strings are bounded by MAX_VERSION_LENGTH; the wrap is apk's own uint64_t.
        self.number = int(self.value) % _WRAP

    def advance(self) -> None:
        """Move to the next part (token_next() in apk-tools)."""
        data, pos, token = self.data, self.pos, self.token
        if pos >= len(data):
            self.token = Token.END
            return
        byte = data[pos]
        if byte in _LOWER:
            if token > Token.DIGIT:
                self.token = Token.INVALID
                return
            self.value = data[pos : pos + 1]
            self.token = Token.LETTER
            self.pos = pos + 1
        elif byte == 0x2E or byte in _DIGITS:  # '.' or a digit
            if byte == 0x2E:
                if token > Token.DIGIT:
                    self.token = Token.INVALID
                    return
                self.pos = pos + 1
            if token in (Token.INITIAL_DIGIT, Token.DIGIT):
                self.token = Token.DIGIT
            elif token == Token.SUFFIX:
                self.token = Token.SUFFIX_NO
            else:
                self.token = Token.INVALID
                return
            self._digits()
        elif byte == 0x5F:  # '_'
            if token > Token.SUFFIX_NO:
                self.token = Token.INVALID
                return
            end = _span(data, pos + 1, _LOWER)
            self.value = data[pos + 1 : end]
            self.pos = end
            suffix = _SUFFIXES.get(self.value)
            if suffix is None:
                self.token = Token.INVALID
                return
            self.suffix = suffix
            self.token = Token.SUFFIX
        elif byte == 0x7E:  # '~'
            end = _span(data, pos + 1, _HEX)
            if token >= Token.COMMIT_HASH or end == pos + 1:
                self.token = Token.INVALID
                return
            self.value = data[pos + 1 : end]
            self.pos = end
            self.token = Token.COMMIT_HASH
        elif byte == 0x2D:  # '-'
            if token >= Token.REVISION_NO or data[pos + 1 : pos + 2] != b"r":
                self.token = Token.INVALID
                return
            self.pos = pos + 2
            self.token = Token.REVISION_NO
            self._digits()
        else:
            self.token = Token.INVALID


def _cmp(one: int, two: int) -> int:
    return (one > two) - (one < two)


def _cmp_bytes(one: bytes, two: bytes) -> int:
    # apk_blob_sort(): memcmp() of the common length, then the shorter first.
    return (one > two) - (one < two)


def _token_cmp(one: _Tokens, two: _Tokens) -> int:
    """token_cmp(): both cursors hold a part of the same kind."""
    token = one.token
    if token == Token.DIGIT and (one.value[:1] == b"0" or two.value[:1] == b"0"):
        # A later number with a leading zero compares as a string (as in Gentoo's rules):
        # "1.01" < "1.1", "8.2.0" < "8.2.001".
        return _cmp_bytes(one.value, two.value)
    if token in (Token.INITIAL_DIGIT, Token.DIGIT, Token.SUFFIX_NO, Token.REVISION_NO):
        return _cmp(one.number, two.number)
    if token == Token.SUFFIX:
        return _cmp(one.suffix, two.suffix)
    # LETTER (one byte) and COMMIT_HASH compare as byte strings.
    return _cmp_bytes(one.value, two.value)


def _compare(a: bytes, b: bytes, fuzzy: bool) -> int:
    one, two = _Tokens(a), _Tokens(b)
    while one.token == two.token and one.token < Token.END:
        result = _token_cmp(one, two)
        if result:
            return result
        one.advance()
        two.advance()
    # Both ended, or both hit an invalid part at the same place: apk calls them equal.
    if one.token == two.token:
        return 0
    if fuzzy and two.token == Token.END:
        return 0
    # Equal so far, and one version has a part the other has not: a pre-release suffix makes
    # its version the older; else the version whose next part is of the lower kind is the newer
    # (END and INVALID are the highest kinds): "1.0" < "1.0.1", "1.0a" < "1.0.1" (DIGIT is
    # lower than LETTER), "1.0" < "1.0-r1", "1.0_foo" (invalid) < "1.0".
    if one.token == Token.SUFFIX and one.suffix < Suffix.NONE:
        return -1
    if two.token == Token.SUFFIX and two.suffix < Suffix.NONE:
        return 1
    return -1 if one.token > two.token else 1


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as apk_version_compare() answers (`apk version -t a b`).

    apk compares every string, valid or not: parts are compared until they differ or one
    version reaches an invalid part, so "1.0" < "1.0bc" (apk-tools' own test vector), and two
    versions equal up to their invalid parts compare equal. is_valid() says whether apk would
    accept a version in a package. Refused (InvalidVersion) are only strings no apk database
    holds: a NUL, non-ASCII text, or past the length bound.
    """
    return _compare(_encode(a), _encode(b), fuzzy=False)


def compare_fuzzy(a: str, b: str) -> int:
    """compare(), except that `a` equals `b` when it agrees with `b` as far as `b` goes: apk's
    fuzzy match (`~`, `<~`, `>~` in a dependency), so "3.6.9" ~ "3.6" but not "3.8" ~ "3.8.1"."""
    return _compare(_encode(a), _encode(b), fuzzy=True)


def is_valid(version: str) -> bool:
    """apk_version_validate(): whether apk accepts `version` as a package version."""
    tokens = _Tokens(_encode(version))
    while tokens.token < Token.END:
        tokens.advance()
    return tokens.token == Token.END
