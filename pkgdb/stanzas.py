"""A strict, bytes-level reader of deb822 stanzas: the format of dpkg's `status` and `status.d/*`.

We do not use python-debian here (the tests use it as a referee). Its parser decodes every line
and, when a line is not UTF-8, guesses an encoding with charset_normalizer/chardet; it re-encodes
str input as strict UTF-8; and it drops lines that are neither a field nor a continuation without
a word. We need the opposite on all three counts: bytes kept as they are (conffile paths are
paths), nothing guessed, and every malformed line reported with its number. It is also 3-5x
faster on a 700-package status file.

Format (deb-control(5), Debian Policy 5.1): stanzas are separated by blank lines (lines of only
spaces/tabs count as blank, as Policy allows); a field is `Name: value`; a line starting with a
space or tab continues the previous field's value.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

__all__ = ["MalformedLines", "Stanza", "parse_stanzas"]

# A field line: a name without whitespace or colon (not starting with '#' or '-'), a colon, the
# value; then every continuation line (starting with a space or tab) that follows it.
_FIELD = re.compile(rb"([^\s:#-][^\s:]*):[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")
_BLANK_RUN = re.compile(rb"\n(?:[ \t]*\n)+")


@dataclass(frozen=True, slots=True)
class Stanza:
    """One stanza's wanted fields; `line` is the 1-based number of its first line."""

    line: int
    fields: Mapping[bytes, bytes]  # value with surrounding spaces stripped; continuation lines kept
    duplicates: tuple[bytes, ...] = ()  # wanted fields given more than once (the first one is kept)


@dataclass(frozen=True, slots=True)
class MalformedLines:
    """A run of lines that are neither a field nor a continuation (`first`..`last`, 1-based)."""

    first: int
    last: int
    reason: str


def parse_stanzas(data: bytes, wanted: frozenset[bytes]) -> Iterator[Stanza | MalformedLines]:
    """Yield, in order, each stanza (only its `wanted` fields) and each run of malformed lines."""
    line = 1
    position = 0
    if data.startswith((b"\n", b" \n", b"\t\n")):
        blank = re.match(rb"(?:[ \t]*\n)+", data)
        assert blank is not None
        position = blank.end()
        line += data.count(b"\n", 0, position)
    for separator in _BLANK_RUN.finditer(data, position):
        yield from _parse_one(data[position : separator.start()], line, wanted)
        line += data.count(b"\n", position, separator.end())
        position = separator.end()
    tail = data[position:]
    if tail.strip():
        yield from _parse_one(tail.rstrip(b"\n"), line, wanted)


def _parse_one(
    text: bytes, line: int, wanted: frozenset[bytes]
) -> Iterator[Stanza | MalformedLines]:
    fields: dict[bytes, bytes] = {}
    duplicates: list[bytes] = []
    covered = 0
    end = len(text)
    # Anchored matches, one after the other: a search (finditer) would retry a line that is not
    # a field from each of its bytes, quadratic in its length (a 64 KiB line without ':' took
    # 17 s); an anchored match costs one pass over the line.
    match_at = _FIELD.match
    while covered < end:
        match = match_at(text, covered)
        if match is None:
            break  # not a field: take the slow path for line numbers
        name = match.group(1)
        if name in wanted:
            if name in fields:
                duplicates.append(name)
            else:
                fields[name] = match.group(2).strip(b" \t")
        covered = match.end() + 1  # the newline after the field
    else:
        yield Stanza(line, fields, tuple(duplicates))
        return
    yield from _parse_slowly(text, line, wanted)


def _parse_slowly(
    text: bytes, line: int, wanted: frozenset[bytes]
) -> Iterator[Stanza | MalformedLines]:
    """Line by line, so that malformed lines can be named; well-formed ones are still used."""
    fields: dict[bytes, bytes] = {}
    duplicates: list[bytes] = []
    current: bytes | None = None  # the wanted field being continued, if any
    in_field = False  # whether a continuation line has a field to continue
    bad_first = 0
    bad_last = 0
    bad_reason = ""
    for number, raw in enumerate(text.split(b"\n"), start=line):
        if raw[:1] in (b" ", b"\t") and in_field:
            if current is not None:
                fields[current] += b"\n" + raw
            continue
        match = _FIELD.fullmatch(raw)
        if match is not None:
            in_field = True
            name = match.group(1)
            current = None
            if name in wanted:
                if name in fields:
                    duplicates.append(name)
                else:
                    fields[name] = match.group(2).strip(b" \t")
                    current = name
            continue
        reason = (
            "continuation line with no field to continue"
            if raw[:1] in (b" ", b"\t")
            else "neither a 'Field: value' line nor a continuation line"
        )
        if bad_first and number == bad_last + 1:
            bad_last = number
        else:
            if bad_first:
                yield MalformedLines(bad_first, bad_last, bad_reason)
            bad_first = bad_last = number
            bad_reason = reason
        in_field = False
        current = None
    if bad_first:
        yield MalformedLines(bad_first, bad_last, bad_reason)
    if fields or duplicates:
        yield Stanza(
            line, {name: value.rstrip(b" \t") for name, value in fields.items()}, tuple(duplicates)
        )
