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
        if _a_stream_behind_our_link(path, info):
            _write_in_place(path, data, follow=True)
            return
        raise OSError(errno.ELOOP, "is a symbolic link (not followed; name the file itself)")
    if info is not None and _is_stream(info.st_mode):
        _write_in_place(path, data, follow=False)
        return
    write_atomically(path, data, mode=0o644)


def _is_stream(mode: int) -> bool:
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


def _a_stream_behind_our_link(path: str, link: os.stat_result) -> bool:
    """`/dev/stdout` and `/proc/self/fd/N`: a link root or we made, to a pipe or a character
    device (never a file: another user cannot make a link we own, and we do not write files
    through links at all)."""
    if link.st_uid not in (0, os.geteuid()):
        return False
    try:
        return _is_stream(os.stat(path).st_mode)
    except OSError:
        return False


def _write_in_place(path: str, data: bytes, *, follow: bool) -> None:
    # O_NONBLOCK: a FIFO nobody reads is ENXIO at once, not a wait for ever.
    flags = os.O_WRONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
    flags |= 0 if follow else os.O_NOFOLLOW
    try:
        fd = os.open(path, flags)
    except OSError as error:
        if error.errno == errno.ENXIO:
            raise OSError(errno.ENXIO, "is a FIFO that nobody reads") from error
        raise
    with open(fd, "wb") as stream:
        info = os.fstat(fd)  # what was opened, not what the name showed a moment before
        if not _is_stream(info.st_mode):
            raise OSError(errno.EINVAL, "changed while it was opened (now not a pipe or device)")
        if info.st_uid not in (0, os.geteuid()):
            raise OSError(errno.EPERM, f"is a FIFO or device of another user (uid {info.st_uid})")
        os.set_blocking(fd, True)  # a reader that is slow is waited for, as a pipe is
        stream.write(data)
