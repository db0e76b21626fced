"""Where `--output` writes: never inside the scanned target, never through a symlink."""

from __future__ import annotations

import errno
import os
import stat

from ..atomic import lies_inside, write_atomically
from ..errors import UsageError

__all__ = ["check_destination", "write_output"]


def check_destination(path: str, target: str) -> None:
    """Refuse an output file inside the scanned target (scan-root never writes into what it
    scans; a hostile root could have planted a link there); the live root `/` excepted."""
    if lies_inside(path, target):
        raise UsageError(f"output {path} is inside the scanned target {target}: refused")


def write_output(path: str, text: str) -> None:
    """Write `text` to `path`. A file is replaced whole (a temp file beside it, renamed over:
    in a sticky /tmp another user's file cannot be replaced); a symlink there is refused, never
    followed (someone else's link in /tmp would aim root's write at any file); a FIFO or a
    character device (a pipe, /dev/null) is written to as it is. OSError says why not."""
    data = text.encode("utf-8")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISLNK(mode):
        raise OSError(errno.ELOOP, "is a symbolic link (not followed; name the file itself)")
    if mode is not None and (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY)
        with open(fd, "wb") as stream:
            stream.write(data)
        return
    write_atomically(path, data, mode=0o644)
