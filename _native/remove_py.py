"""Pure-Python twin of _native._remove: remove a directory tree, never following a symlink."""

from __future__ import annotations

import os
import shutil
import stat
from typing import Any

__all__ = ["remove_tree"]


def remove_tree(path: str | bytes, *, threads: int = 0) -> None:
    """Remove the directory `path` and everything below it (shutil.rmtree: fd-based, symlinks
    unlinked, not followed); `threads` is accepted for the native signature and unused.

    Without root, a directory the image made unwritable (0500) is opened up (0700) first.
    Raises OSError for what could not be removed.
    """
    del threads  # one thread: Python's unlinks would only contend for the GIL (measured)

    def open_up(function: Any, failed: str | bytes, info: Any) -> None:
        if not isinstance(info[1], PermissionError):
            raise info[1]  # anything else (a symlink given as the tree, ...) is the caller's
        os.chmod(os.path.dirname(failed), stat.S_IRWXU)
        function(failed)

    shutil.rmtree(path, onerror=open_up)
