"""Text from the target made safe to print on a terminal or in a JSON report: every control
character shown, none obeyed."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["json_safe", "terminal_safe"]

# Categories never printed as they are: controls (Cc: C0 with newline and tab, so that one field
# stays on one line; DEL; C1, where 0x9b is a one-byte CSI to some terminals), format characters
# (Cf: U+202E and the other bidi overrides and isolates, zero-width marks, U+FEFF: they reorder or
# hide text), line and paragraph separators (Zl, Zp: U+2028, U+2029), and lone surrogates (Cs:
# from a JSON input's "\ud800"; no encoding can write one, so printing it raised an exit 5).
_HIDDEN = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_SUSPECT = re.compile(r"[^\x20-\x7e]")  # printable ASCII is always safe: the fast path
# json.dumps escapes every C0 control inside a string itself; its newlines are the indent's.
_JSON_SUSPECT = re.compile(r"[^\x20-\x7e\n]")


def _visible(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _terminal_escape(match: re.Match[str]) -> str:
    char = match.group()
    return _visible(char) if unicodedata.category(char) in _HIDDEN else char


def terminal_safe(text: str) -> str:
    """`text` with every control and format character written as a visible escape (`\\x1b`,
    `\\u202e`), so that a name from the target cannot move the cursor, clear the screen, set a
    hyperlink or title, or forge a line of the report."""
    return _SUSPECT.sub(_terminal_escape, text)


def _json_escape(match: re.Match[str]) -> str:
    char = match.group()
    if unicodedata.category(char) not in _HIDDEN:
        return char
    code = ord(char)
    if code < 0x10000:
        return f"\\u{code:04x}"
    high, low = divmod(code - 0x10000, 0x400)  # JSON spells it as a UTF-16 surrogate pair
    return f"\\u{0xD800 + high:04x}\\u{0xDC00 + low:04x}"


def json_safe(document: str) -> str:
    """A JSON text from json.dumps(ensure_ascii=False) with what a terminal could obey (and
    what UTF-8 cannot encode) written as `\\uXXXX` escapes: the same JSON value, still readable
    for other non-ASCII text. Outside its strings a JSON text is printable ASCII and newlines, so
    every other such character is inside a string, where the escape means that very character."""
    return _JSON_SUSPECT.sub(_json_escape, document)
