"""Pure-Python twin of the multi-pattern matcher: bytes.find per pattern, sorted like the DFA."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["Matcher", "Stream"]


class Matcher:
    """Finds every occurrence of any of `patterns` (non-empty bytes) in data."""

    def __init__(self, patterns: Iterable[bytes]) -> None:
        checked = []
        for pattern in patterns:
            if not isinstance(pattern, bytes) or not pattern:
                raise ValueError(f"a pattern must be non-empty bytes, not {pattern!r}")
            checked.append(pattern)
        if not checked:
            raise ValueError("a matcher needs at least one pattern")
        self.patterns: tuple[bytes, ...] = tuple(checked)
        self.max_length = max(len(pattern) for pattern in self.patterns)

    def ends(self, data: bytes, base: int = 0) -> list[tuple[int, int, int]]:
        """Every hit as (absolute end offset, pattern index, absolute start offset), sorted."""
        hits = []
        for index, pattern in enumerate(self.patterns):
            start = data.find(pattern)
            while start >= 0:
                hits.append((base + start + len(pattern), index, base + start))
                start = data.find(pattern, start + 1)
        hits.sort()
        return hits

    def find_all(self, data: bytes, max_hits: int = 1 << 20) -> tuple[list[tuple[int, int]], int]:
        """[(pattern index, start offset)] in (end offset, pattern index) order, and the total."""
        hits = self.ends(bytes(data))
        return [(index, start) for _end, index, start in hits[:max_hits]], len(hits)


class Stream:
    """Feeds a file chunk by chunk: hits spanning chunk boundaries are found exactly once."""

    def __init__(self, matcher: Matcher, max_hits: int) -> None:
        self.matcher = matcher
        self.max_hits = max_hits
        self.hits: list[tuple[int, int]] = []
        self.total = 0
        self._carry = b""  # the last max_length-1 bytes seen, where a straddling hit begins
        self._offset = 0

    def feed(self, chunk: bytes | bytearray | memoryview) -> None:
        data = self._carry + chunk
        base = self._offset - len(self._carry)
        for end, index, start in self.matcher.ends(data, base):
            if end > self._offset:  # ends in the new chunk: not reported by an earlier feed
                self.total += 1
                if len(self.hits) < self.max_hits:
                    self.hits.append((index, start))
        self._offset += len(chunk)
        keep = self.matcher.max_length - 1
        self._carry = data[-keep:] if keep else b""
