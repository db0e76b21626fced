"""hash_files' request and content-argument rules, shared by both cores (validated before I/O)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .types import Digest

__all__ = [
    "MAX_WINDOWS",
    "ContentOptions",
    "content_options",
    "content_windows",
    "validate_request",
]

_ALL = int(Digest.MD5 | Digest.SHA1 | Digest.SHA256 | Digest.CONTENT | Digest.XXH3)
# Windows cut per file around captured hits: enough context for a check, bounded output.
MAX_WINDOWS = 8
_DOT_COMPONENT = re.compile(rb"(?:^|/)\.\.?(?:/|$)")  # a "." or ".." component


def validate_request(path: object, flags: object) -> None:
    """Raise TypeError/ValueError unless `path` is a clean relative path and `flags` Digest bits
    (Digest.CONTENT included).

    Both implementations reject the same requests before doing any I/O: "", "/abs", b"a//b",
    "." or ".." components, and NUL bytes never reach a syscall.
    """
    if not isinstance(path, bytes):
        raise TypeError(f"request path must be bytes, not {type(path).__name__}")
    if not isinstance(flags, int) or flags < 0 or flags & ~_ALL:
        raise ValueError(f"invalid digest flags {flags!r} for {path!r}")
    if (
        not path
        or path.startswith(b"/")
        or path.endswith(b"/")
        or b"//" in path
        or b"\0" in path
        or _DOT_COMPONENT.search(path) is not None
    ):
        raise ValueError(f"request path must be relative and normalised: {path!r}")


@dataclass(frozen=True, slots=True)
class ContentOptions:
    """hash_files' content-matching arguments, checked once (both implementations use this)."""

    matcher: Any
    capture: frozenset[int]
    max_hits: int
    window_before: int
    window_after: int
    window_file_limit: int
    content_limit: int


def content_options(
    matcher_class: type,
    any_content: bool,
    matcher: object,
    capture: Iterable[int],
    max_hits: int,
    window_before: int,
    window_after: int,
    window_file_limit: int,
    content_limit: int,
) -> ContentOptions | None:
    """Validate the content arguments before any I/O; None when no request wants CONTENT.

    A matcher of the other implementation is a TypeError (the native hasher walks the native
    DFA with the GIL released, the twin needs matcher_py's find-based Stream); a CONTENT request
    without a matcher, a negative limit or a capture index that names no pattern is a ValueError.
    """
    if matcher is not None and not isinstance(matcher, matcher_class):
        raise TypeError(
            f"matcher must be a {matcher_class.__module__}.{matcher_class.__qualname__}, "
            f"not {type(matcher).__module__}.{type(matcher).__qualname__}"
        )
    captured = frozenset(capture)
    for name, value in (
        ("max_hits", max_hits),
        ("window_before", window_before),
        ("window_after", window_after),
        ("window_file_limit", window_file_limit),
        ("content_limit", content_limit),
    ):
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, not {value!r}")
    if not any_content:
        return None
    if matcher is None:
        raise ValueError("a request has Digest.CONTENT but no matcher was given")
    count = len(matcher.patterns)  # type: ignore[attr-defined]
    for index in captured:
        if not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(f"capture index {index!r} names none of the {count} patterns")
    return ContentOptions(
        matcher, captured, max_hits, window_before, window_after, window_file_limit, content_limit
    )


def content_windows(
    hits: Iterable[tuple[int, int]],
    capture: frozenset[int],
    data: bytes | bytearray,
    before: int,
    after: int,
) -> tuple[tuple[int, bytes], ...]:
    """(offset, bytes) around every hit of a captured pattern, overlapping/adjacent ones merged,
    the first MAX_WINDOWS by offset."""
    spans = sorted(
        (max(0, start - before), min(len(data), start + after))
        for index, start in hits
        if index in capture
    )
    merged: list[list[int]] = []
    for low, high in spans:
        if merged and low <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], high)
        elif len(merged) == MAX_WINDOWS:
            break  # sorted: every later span starts past the last window too
        else:
            merged.append([low, high])
    return tuple((low, bytes(data[low:high])) for low, high in merged)
