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
    character device (a pipe, /dev/null) is written to as it is, but only a FIFO with a reader
    (opening one without waits forever) and never one another user made (in /tmp, a FIFO
    planted at the name would stop every scan, or take its report). OSError says why not."""
    data = text.encode("utf-8")
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        info = None
    if info is not None and stat.S_ISLNK(info.st_mode):
        raise OSError(errno.ELOOP, "is a symbolic link (not followed; name the file itself)")
    if info is not None and (stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)):
        _write_in_place(path, data)
        return
    write_atomically(path, data, mode=0o644)


def _write_in_place(path: str, data: bytes) -> None:
    # O_NONBLOCK: a FIFO nobody reads is ENXIO at once, not a wait for ever.
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "is a FIFO that nobody reads") from error
        raise
    with open(fd, "wb") as stream:
        info = os.fstat(fd)  # what was opened, not what the name showed a moment before
        if info.st_uid not in (0, os.geteuid()):
            raise OSError(errno.EPERM, f"is a FIFO or device of another user (uid {info.st_uid})")
        os.set_blocking(fd, True)  # a reader that is slow is waited for, as a pipe is
        stream.write(data)
