"""Opening a path only when it is a regular file (or a directory, when asked): a device is
judged before it is opened, never opened."""

from __future__ import annotations

import errno
import os
import stat

__all__ = ["NotRegular", "Replaced", "not_regular", "open_judged"]


class NotRegular(OSError):
    """The path is a device, FIFO, socket or other node: refused without being opened."""


class Replaced(OSError):
    """The path was replaced by another file between being judged and being opened."""


def not_regular(mode: int) -> str:
    """Why a node that is no file or directory is refused, naming what it is."""
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device node (never opened), not a regular file"
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a node"
    return f"{kind}, not a regular file"


def open_judged(
    path: str | bytes | os.PathLike[str],
    *,
    dir_fd: int | None = None,
    follow: bool = False,
    flags: int = os.O_RDONLY,
    directories: bool = False,
) -> tuple[int, os.stat_result]:
    """A descriptor of `path` opened with `flags`, and its fstat.

    Opening a device acts (/dev/watchdog arms a reboot, a tape rewinds, a terminal may become
    the controlling one; a container with CAP_MKNOD can make such nodes anywhere), so the path
    is first opened O_PATH, which opens nothing, judged by fstat, and only a regular file (or a
    directory, with `directories`) is then opened, through /proc/self/fd: the same inode,
    whatever is renamed into place meanwhile. `follow` false refuses a symlink as the last
    component (ELOOP). NotRegular or Replaced (both OSErrors) say why not; other OSErrors
    (ENOENT, EACCES...) are the system's.
    """
    nofollow = 0 if follow else os.O_NOFOLLOW
    flags |= os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # NONBLOCK: a FIFO swapped in cannot stall
    holder = os.open(path, os.O_PATH | os.O_CLOEXEC | nofollow, dir_fd=dir_fd)
    try:
        judged = os.fstat(holder)
        mode = judged.st_mode
        if stat.S_ISLNK(mode):  # O_PATH|O_NOFOLLOW opens the link itself
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), os.fsdecode(path))
        if not (stat.S_ISREG(mode) or (directories and stat.S_ISDIR(mode))):
            raise NotRegular(errno.EINVAL, not_regular(mode), os.fsdecode(path))
        try:
            fd = os.open(f"/proc/self/fd/{holder}", flags)
        except FileNotFoundError:
            # No /proc: the path itself, kept only if it is still the inode judged above.
            fd = os.open(path, flags | nofollow, dir_fd=dir_fd)
    finally:
        os.close(holder)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (judged.st_dev, judged.st_ino):
        os.close(fd)
        raise Replaced(errno.ESTALE, "was replaced while it was opened", os.fsdecode(path))
    return fd, opened
