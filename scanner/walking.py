"""Walks a root once for the checks that look at every file, with the live-root rules applied."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

import _native
from _native import WalkEntry, WalkError
from pkgdb import RootFS

from .report import Problem, ProblemKind

__all__ = ["LIVE_ROOT_SKIPS", "is_live_root", "walk_root"]

# Kernel filesystems of a running system: not the image's content, and reading them can block.
LIVE_ROOT_SKIPS = (b"proc", b"sys", b"dev")


def is_live_root(root: RootFS) -> bool:
    """True when the scanned root is the scanner's own `/` (scanning from inside the task)."""
    try:
        return os.path.samestat(os.stat(root.fd), os.stat("/"))
    except OSError:
        return False


def walk_root(
    root: RootFS,
    unchanged: Mapping[bytes, tuple[object, ...]] | None = None,
    matched: list[bytes] | None = None,
) -> Iterator[WalkEntry | Problem]:
    """Every entry under the root, never crossing a mount point; walk errors become problems.
    A regular file whose identity `unchanged` records goes to `matched` instead (_native.walk)."""
    skip = LIVE_ROOT_SKIPS if is_live_root(root) else ()
    if unchanged is not None and matched is None:
        raise TypeError("walk_root: `unchanged` needs a `matched` list")
    walk = _native.walk(
        root.path, skip=skip, one_file_system=True, unchanged=unchanged, matched=matched
    )
    for item in walk:
        if isinstance(item, WalkError):
            yield Problem(
                kind=ProblemKind.WALK,
                message=f"could not list or stat: {item.message}",
                path=item.path,
                errno=item.errno,
            )
        else:
            yield item
