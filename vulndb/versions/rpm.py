"""rpm version comparison: rpmvercmp() (rpm 4.15+, with `~` and `^`) and labelCompare's EVR order."""

from __future__ import annotations

from dataclasses import dataclass

from ._common import InvalidVersion, encode

_TILDE = 0x7E
_CARET = 0x5E


def _isdigit(byte: int) -> bool:
    return 0x30 <= byte <= 0x39


def _isalpha(byte: int) -> bool:
    # rpm's own risalpha(): ASCII letters only, whatever the locale.
    return 0x41 <= byte <= 0x5A or 0x61 <= byte <= 0x7A


def _is_separator(byte: int) -> bool:
    return not (_isdigit(byte) or _isalpha(byte)) and byte not in (_TILDE, _CARET)


def vercmp(a: str, b: str) -> int:
    """rpmvercmp(a, b): -1, 0 or 1 for one version or release field (no epoch, no `-` split)."""
    return _vercmp(encode(a, "rpm"), encode(b, "rpm"))


def _vercmp(one: bytes, two: bytes) -> int:
    if one == two:
        return 0
    i = j = 0
    len_one, len_two = len(one), len(two)
    while i < len_one or j < len_two:
        # Separators (anything but letters, digits, `~` and `^`) only delimit segments.
        while i < len_one and _is_separator(one[i]):
            i += 1
        while j < len_two and _is_separator(two[j]):
            j += 1
        at_one = one[i] if i < len_one else 0
        at_two = two[j] if j < len_two else 0
        # `~` sorts before everything, even the end of the string ("1.0~rc1" < "1.0").
        if at_one == _TILDE or at_two == _TILDE:
            if at_one != _TILDE:
                return 1
            if at_two != _TILDE:
                return -1
            i += 1
            j += 1
            continue
        # `^` sorts after the end of the string but before anything else ("1.0" < "1.0^git1"
        # < "1.0.1").
        if at_one == _CARET or at_two == _CARET:
            if not at_one:
                return -1
            if not at_two:
                return 1
            if at_one != _CARET:
                return 1
            if at_two != _CARET:
                return -1
            i += 1
            j += 1
            continue
        if not (at_one and at_two):
            break
        # One segment: all digits or all letters, typed by the first string's character.
        numeric = _isdigit(at_one)
        in_segment = _isdigit if numeric else _isalpha
        end_one, end_two = i, j
        while end_one < len_one and in_segment(one[end_one]):
            end_one += 1
        while end_two < len_two and in_segment(two[end_two]):
            end_two += 1
        if end_two == j:
            # The second string has the other kind of segment here: numbers beat letters.
            return 1 if numeric else -1
        seg_one, seg_two = one[i:end_one], two[j:end_two]
        if numeric:
            seg_one, seg_two = seg_one.lstrip(b"0"), seg_two.lstrip(b"0")
            if len(seg_one) != len(seg_two):
                return 1 if len(seg_one) > len(seg_two) else -1
        if seg_one != seg_two:
            return 1 if seg_one > seg_two else -1
        i, j = end_one, end_two
    if i >= len_one and j >= len_two:
        # Every segment was equal; only the separators differed ("1.0" == "1_0").
        return 0
    # Whichever version still has characters left over is the newer.
    return -1 if i >= len_one else 1


@dataclass(frozen=True, slots=True)
class Evr:
    """An rpm EVR: epoch (None when absent, which compares as 0), version, release or None."""

    epoch: str | None
    version: str
    release: str | None


def parse(evr: str) -> Evr:
    """Split `[epoch:]version[-release]` as rpm's parseEVR() (and python3-rpm's rpm.ver) do.

    The epoch is the run of digits before a `:` (an empty one, ":1.0", is "0"); the release is
    whatever follows the last `-`. An empty version is refused: rpm builds no package without
    one.
    """
    data = encode(evr, "rpm")
    digits = 0
    while digits < len(data) and _isdigit(data[digits]):
        digits += 1
    epoch: str | None = None
    rest = evr
    if data[digits : digits + 1] == b":":
        epoch = evr[:digits] or "0"
        rest = evr[digits + 1 :]
    version, hyphen, release = rest.rpartition("-")
    if not hyphen:
        version, release_or_none = rest, None
    else:
        release_or_none = release
    if not version:
        raise InvalidVersion(f"rpm EVR {evr!r} has an empty version")
    return Evr(epoch, version, release_or_none)


def _field(one: str | None, two: str | None) -> int:
    """labelCompare's compare_values(): an absent field is older than any present one."""
    if one is None or two is None:
        return (one is not None) - (two is not None)
    return _vercmp(encode(one, "rpm"), encode(two, "rpm"))


def compare_evr(
    a: tuple[str | int | None, str, str | None], b: tuple[str | int | None, str, str | None]
) -> int:
    """rpm.labelCompare((e, v, r), (e, v, r)): epoch (None is "0"), version, release; -1/0/1."""
    epoch_a, epoch_b = _epoch(a[0]), _epoch(b[0])
    return _field(epoch_a, epoch_b) or _field(a[1], b[1]) or _field(a[2], b[2])


def _epoch(epoch: str | int | None) -> str:
    if epoch is None:
        return "0"
    if isinstance(epoch, int):
        if epoch < 0:
            raise InvalidVersion(f"rpm epoch {epoch} is negative")
        return str(epoch)
    if not (epoch.isascii() and epoch.isdigit()):
        raise InvalidVersion(f"rpm epoch {epoch!r} is not a number")
    return epoch


def compare(a: str, b: str) -> int:
    """Two `[epoch:]version[-release]` strings in rpm's order (labelCompare of their parts)."""
    one, two = parse(a), parse(b)
    return compare_evr((one.epoch, one.version, one.release), (two.epoch, two.version, two.release))


# Element tags of a sort key, in rpmvercmp's order: `~` before the end of the string, the end
# before `^`, `^` before any segment, letters before numbers.
_KEY_TILDE, _KEY_END, _KEY_CARET, _KEY_ALPHA, _KEY_NUMBER = (
    b"\x00",
    b"\x01",
    b"\x02",
    b"\x03",
    b"\x04",
)


def _vercmp_key(text: str) -> bytes:
    """One field's elements (separators dropped, as rpmvercmp skips them), then the end."""
    data = encode(text, "rpm")
    out = bytearray()
    i, length = 0, len(data)
    while i < length:
        byte = data[i]
        if byte == _TILDE:
            out += _KEY_TILDE
            i += 1
        elif byte == _CARET:
            out += _KEY_CARET
            i += 1
        elif _isdigit(byte) or _isalpha(byte):
            in_segment = _isdigit if _isdigit(byte) else _isalpha
            end = i
            while end < length and in_segment(data[end]):
                end += 1
            segment = data[i:end]
            if in_segment is _isdigit:
                segment = segment.lstrip(b"0")
                out += _KEY_NUMBER + len(segment).to_bytes(2, "big") + segment
            else:
                out += _KEY_ALPHA + segment + b"\x00"  # letters never hold a NUL: strcmp's end
            i = end
        else:
            i += 1  # a separator only delimits
    return bytes(out + _KEY_END)


def sort_key(evr: str) -> bytes:
    """Bytes whose order is compare()'s (labelCompare's): epoch, version, then the release,
    an absent one below any present one. InvalidVersion as parse()."""
    parsed = parse(evr)
    release = b"\x00" if parsed.release is None else b"\x01" + _vercmp_key(parsed.release)
    return _vercmp_key(_epoch(parsed.epoch)) + _vercmp_key(parsed.version) + release
