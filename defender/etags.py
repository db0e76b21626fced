"""The ETag a cache keeps beside its copy of something the console serves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from scanner.atomic import write_atomically

__all__ = ["forget", "read_etag", "write_etag"]

MAX_ETAG = 256  # far above a quoted SHA-256; a longer file is not one we wrote


def read_etag(path: Path) -> str | None:
    """The ETag kept at `path`, or None (absent, unreadable, not a printable header value)."""
    try:
        text = path.read_bytes()[:MAX_ETAG].decode("ascii", "replace").strip()
    except OSError:
        return None
    return text if text and text.isprintable() else None


def write_etag(path: Path, headers: Mapping[str, str]) -> None:
    """Keep the ETag of an answer's `headers` (empty when it gave none) at `path`."""
    etag = next((value for name, value in headers.items() if name.lower() == "etag"), "")
    write_atomically(str(path), etag.encode("ascii", "replace")[:MAX_ETAG])


def forget(*paths: Path) -> None:
    """Remove a cached copy and its ETag: the console says it has none."""
    for path in paths:
        path.unlink(missing_ok=True)
