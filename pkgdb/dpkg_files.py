"""Parsers for dpkg's per-file records: `*.md5sums` lines, the `Conffiles:` field, `diversions`.

Pure functions of bytes; the reader (dpkg.py) finds the files and turns results into records.
Paths come back relative, with no leading slash, exactly as the DB spells them, never decoded.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

__all__ = [
    "Conffile",
    "Diversion",
    "parse_conffiles",
    "parse_diversions",
    "parse_md5sums",
]

# `<32 hex digits><blanks><path to the end of the line>`: what `split(None, 1)` accepts, since
# a filename may contain spaces (python-debian debfile.py does the same). dpkg writes two spaces.
_MD5SUMS_LINE = re.compile(rb"(?m)^([0-9A-Fa-f]{32})[ \t]+/*([^\s/][^\n]*)")
_MD5_HEX = re.compile(rb"[0-9A-Fa-f]{32}")
_CONFFILE_FLAGS = (b"obsolete", b"remove-on-upgrade")
_NUL = "path contains a NUL byte"


def parse_md5sums(data: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, str]]]:
    """Return ([(path, raw md5 digest)], [(line number, what is wrong)]) for one md5sums file.

    A malformed line is reported and skipped; the other lines are still used. Blank lines are
    skipped silently (they say nothing).
    """
    entries = _MD5SUMS_LINE.findall(data)
    lines = data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)
    # the common case: every line matched (and no NUL hides in a path), no line numbers needed
    if len(entries) == lines and b"\0" not in data:
        unhex = binascii.a2b_hex
        return [(path, unhex(digest)) for digest, path in entries], []
    return _parse_md5sums_slowly(data)


def _parse_md5sums_slowly(data: bytes) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, str]]]:
    entries: list[tuple[bytes, bytes]] = []
    errors: list[tuple[int, str]] = []
    for number, line in enumerate(data.split(b"\n"), start=1):
        parts = line.split(None, 1)
        if not parts:
            continue
        if len(parts) == 1 or not parts[1].strip():
            errors.append((number, "no path after the digest"))
            continue
        digest, path = parts
        if _MD5_HEX.fullmatch(digest) is None:
            errors.append((number, f"not an MD5 digest (32 hex digits): {digest[:40]!r}"))
            continue
        if b"\0" in path:
            errors.append((number, _NUL))  # no file can have this name
            continue
        entries.append((path.lstrip(b"/"), binascii.a2b_hex(digest)))
    return entries, errors


@dataclass(frozen=True, slots=True)
class Conffile:
    """One line of a stanza's `Conffiles:` field."""

    path: bytes  # relative, no leading slash
    digest: bytes | None  # None for dpkg's placeholder `newconffile` (not yet configured)
    obsolete: bool  # no longer shipped by the package; the file may linger on disk
    remove_on_upgrade: bool  # to be removed on upgrade; not shipped, not expected on disk


def parse_conffiles(value: bytes) -> tuple[list[Conffile], list[tuple[int, str]]]:
    """Parse a `Conffiles:` value: lines ` /path <md5|newconffile> [obsolete] [remove-on-upgrade]`.

    The path may contain spaces, so it is read from the right, as dpkg's own parser does
    (lib/dpkg/fields.c `f_conffiles`, `conffvalue_lastword`). Line numbers count from the
    field's first line.
    """
    conffiles: list[Conffile] = []
    errors: list[tuple[int, str]] = []
    for number, line in enumerate(value.split(b"\n"), start=1):
        line = line.strip(b" \t")
        if not line:
            continue
        rest = line
        flags: set[bytes] = set()
        while True:
            parts = rest.rsplit(None, 1)
            if len(parts) != 2:
                break
            head, last = parts
            if last in _CONFFILE_FLAGS:
                flags.add(last)
                rest = head
                continue
            break
        if len(parts) != 2:
            errors.append((number, "conffile line is not '/path digest'"))
            continue
        path, digest_text = parts
        if not path.startswith(b"/"):
            errors.append((number, "conffile path is not absolute"))
            continue
        if b"\0" in path:
            errors.append((number, _NUL))
            continue
        if digest_text == b"newconffile":
            digest = None
        elif _MD5_HEX.fullmatch(digest_text) is not None:
            digest = binascii.a2b_hex(digest_text)
        else:
            errors.append(
                (number, f"conffile digest is neither MD5 nor 'newconffile': {digest_text[:40]!r}")
            )
            continue
        conffiles.append(
            Conffile(path.lstrip(b"/"), digest, b"obsolete" in flags, b"remove-on-upgrade" in flags)
        )
    return conffiles, errors


@dataclass(frozen=True, slots=True)
class Diversion:
    """`dpkg-divert`: files other packages install at `original` go to `diverted` instead."""

    original: bytes  # relative, no leading slash
    diverted: bytes  # relative, no leading slash
    package: (
        str | None
    )  # the diverting package; None for a local (admin) diversion, `:` in the file


def parse_diversions(data: bytes) -> tuple[dict[bytes, Diversion], list[tuple[int, str]]]:
    """Parse `var/lib/dpkg/diversions`: groups of three lines (from, to, package or `:`).

    Returns the diversions by original path and (line number, problem) for a truncated or
    malformed group; complete groups before and after it are still used.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    diversions: dict[bytes, Diversion] = {}
    errors: list[tuple[int, str]] = []
    whole = len(lines) - len(lines) % 3
    for index in range(0, whole, 3):
        original, diverted, package = lines[index : index + 3]
        if (
            not original.startswith(b"/")
            or not diverted.startswith(b"/")
            or not package
            or b"\0" in original + diverted
        ):
            errors.append(
                (index + 1, "diversion entry is not '/from', '/to', 'package or :' (skipped)")
            )
            continue
        diversions[original.lstrip(b"/")] = Diversion(
            original.lstrip(b"/"),
            diverted.lstrip(b"/"),
            None if package == b":" else package.decode("utf-8", "backslashreplace"),
        )
    if whole != len(lines):
        errors.append(
            (whole + 1, f"truncated: last entry has {len(lines) - whole} of 3 lines (ignored)")
        )
    return diversions, errors
