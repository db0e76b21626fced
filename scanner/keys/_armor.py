"""Finds the armored block (BEGIN line .. END line) around a marker hit and decodes its base64 body.

Keys are found as files of their own and also pasted into other text: JSON (`"-----BEGIN ...\\n
MIIE...\\n-----END ...\\n"`, as in cloud service-account files), C or Java string literals, and
indented heredocs. So the body is read line by line with escaped newlines undone, surrounding
quotes and indentation dropped, and what is left must be pure base64 — anything else is prose or a
template, not a key.
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

__all__ = ["Block", "decode_base64", "find_block"]

# How far from the hit a BEGIN line can start: "-----BEGIN " plus a three-word label.
_REACH = 64
# Header lines (RFC 1421 "Proc-Type: 4,ENCRYPTED", RFC 4880 "Version: ...", SSH2 "Comment: ...").
_HEADER = re.compile(rb"""^["']?([A-Za-z][A-Za-z0-9-]{0,40}): ?(.*?)["']?$""")
_MAX_HEADERS = 16
_QUOTES = b"\"'"
_JOINERS = re.compile(rb"[+,;)\s]*")


@dataclass(frozen=True, slots=True)
class Block:
    """One armored block: its label, extent in the window, headers and still-encoded body."""

    label: bytes
    start: int
    end: int
    headers: dict[bytes, bytes]
    body: bytes
    cut: bool


def find_block(
    window: bytes, hit: int, begin: re.Pattern[bytes], end_line: bytes, limit: int
) -> Block | None:
    """The block whose BEGIN line (matching `begin`, group 1 = label) covers `hit`.

    `end_line` is a template with `{}` for the label. A block whose END line is missing is cut;
    it is still returned when the window ran out first (`limit` bytes after the hit were there),
    because the caller may accept a block that long; otherwise it was truncated and is refused.
    """
    found = None
    for match in begin.finditer(window, max(0, hit - _REACH), min(len(window), hit + _REACH)):
        if match.start() <= hit < match.end():
            found = match
            break
    if found is None:
        return None
    label = found.group(1)
    closing = end_line.replace(b"{}", label)
    stop = window.find(closing, found.end(), found.end() + limit)
    cut = stop < 0
    if cut:
        if len(window) - hit < limit:
            return None
        stop = end = len(window)
    else:
        end = stop + len(closing)
    text = window[found.end() : stop]
    # A second BEGIN inside means this one was a quoted header or an empty template.
    if b"-----BEGIN " in text or b"---- BEGIN " in text:
        return None
    parsed = _split(text, cut)
    if parsed is None:
        return None
    headers, body = parsed
    return Block(label, found.start(), end, headers, body, cut)


def _split(text: bytes, cut: bool) -> tuple[dict[bytes, bytes], bytes] | None:
    """Headers and the joined base64 body; None when any body line is not base64."""
    # JSON and C escapes: "\n" line breaks, "\r" before them, and "\/" (JSON may escape slashes).
    text = text.replace(b"\\r", b"").replace(b"\\n", b"\n").replace(b"\\/", b"/")
    headers: dict[bytes, bytes] = {}
    lines: list[bytes] = []
    continued = False
    for raw in text.split(b"\n"):
        line = raw.strip()
        if not lines:
            # RFC 4716 (SSH2) folds long header values with a trailing backslash.
            if continued:
                continued = line.endswith(b"\\")
                continue
            header = _HEADER.match(line)
            if header is not None:
                if len(headers) >= _MAX_HEADERS:
                    return None
                headers[header.group(1).lower()] = header.group(2)
                continued = line.endswith(b"\\")
                continue
        line = _unquote(line)
        if line:
            lines.append(line)
    # OpenPGP armor ends with a CRC-24 line "=XXXX" (RFC 4880 6.1); it is not part of the data.
    if lines and lines[-1].startswith(b"=") and len(lines[-1]) == 5:
        lines.pop()
    body = b"".join(lines)
    if cut:
        # The window ended mid-body: keep whole 4-character groups only.
        body = body[: len(body) - len(body) % 4]
    return headers, body


def _unquote(line: bytes) -> bytes:
    """The part of a line inside string-literal quotes: `"MIIE..."`, `"MIIE...`, `MIIE..." +`."""
    for quote in _QUOTES:
        first = line.find(quote)
        if first < 0:
            continue
        last = line.rfind(quote)
        if last > first:
            return line[first + 1 : last].strip()
        before, after = line[:first].strip(), line[first + 1 :].strip()
        if before:
            return before
        # `" +` or `",` is what is left of a closing quote and its concatenation operator.
        return b"" if _JOINERS.fullmatch(after) else after
    return line


def decode_base64(body: bytes) -> bytes | None:
    """Strict base64 (no stray characters, correct padding), or None."""
    if not body or len(body) % 4:
        return None
    try:
        return binascii.a2b_base64(body, strict_mode=True)
    except binascii.Error:  # the one error strict decoding raises: not base64, so not a key
        return None
