"""Text from the target made safe to print on a terminal: every control character shown, none
obeyed."""

from __future__ import annotations

import re
import unicodedata

__all__ = ["terminal_safe"]

# C0 controls (newline and tab included: one field must stay on one line), DEL, C1 controls
# (0x9b is a one-byte CSI to some terminals), and the Unicode characters that reorder or hide
# text (bidi overrides and isolates, zero-width marks) or break lines (U+2028/U+2029).
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_FORMAT = {"Cf"}  # format characters: U+202E, U+2066-U+2069, U+200B-U+200F, U+FEFF...


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: str) -> str:
    """`text` with every control and format character written as a visible escape (`\\x1b`,
    `\\u202e`), so that a name from the target cannot move the cursor, clear the screen, set a
    hyperlink or title, or forge a line of the report."""
    text = _UNSAFE.sub(_escape, text)
    if text.isascii():
        return text
    return "".join(
        f"\\u{ord(char):04x}" if unicodedata.category(char) in _FORMAT else char for char in text
    )
