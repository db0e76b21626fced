"""Replace a file so that a reader sees the old or the new content, never half of either."""

from __future__ import annotations

import errno
import os
import stat
import tempfile

__all__ = ["lies_inside", "write_atomically"]


def write_atomically(path: str, data: bytes, mode: int = 0o600) -> None:
    """Temp file `.NAME.XXXX.tmp` beside `path`, fsync, rename, fsync the directory.

    Raises OSError, also when `path` is something other than a file or a symlink (a device,
    a FIFO: not ours to replace); a temp file is never left behind. The temp name is part of the contract:
    the content pass skips a state file's temporaries when the state lies inside the root.
    """
    try:
        present = os.lstat(path).st_mode
    except FileNotFoundError:
        present = None
    if present is not None and not (stat.S_ISREG(present) or stat.S_ISLNK(present)):
        # The rename would put a file where a device, FIFO or directory was (/dev/zero given
        # as --state): never ours to replace. A symlink is replaced itself, never followed.
        raise OSError(errno.EEXIST, "not a regular file", path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    renamed = False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        renamed = True
        directory_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory_fd)  # the rename itself survives a crash
        finally:
            os.close(directory_fd)
    except BaseException:
        if not renamed:
            os.unlink(temporary)
        raise


def lies_inside(path: str, target: str) -> bool:
    """Whether a file to be written at `path` would land inside `target` (its directory's
    symlinks resolved, the name itself not: it is replaced, never followed). The live root `/`
    holds everything, yet scanning from inside a task must still write: never inside it."""
    real_target = os.path.realpath(target)
    if real_target == "/":
        return False
    directory, name = os.path.split(os.path.abspath(path))
    real = os.path.join(os.path.realpath(directory), name)
    return real == real_target or real.startswith(real_target.rstrip("/") + "/")
