"""Replace a file so that a reader sees the old or the new content, never half of either."""

from __future__ import annotations

import errno
import os
import secrets
import stat

__all__ = ["lies_inside", "write_atomically"]


def write_atomically(
    path: str, data: bytes, mode: int = 0o600, *, directory_fd: int | None = None
) -> None:
    """Temp file `.NAME.XXXX.tmp` beside `path`, fsync, rename, fsync the directory.

    `directory_fd`, when given, is the directory to write in (opened O_RDONLY|O_DIRECTORY when
    the path was judged), and only `path`'s last component is used: a directory of the path
    swapped for a symlink meanwhile (a state file kept in a hostile root) cannot redirect the
    write. Raises OSError, also when `path` is something other than a file or a symlink (a
    device, a FIFO: not ours to replace); a temp file is never left behind. The temp name is
    part of the contract: the content pass skips a state file's temporaries when the state lies
    inside the root.
    """
    name = os.path.basename(path)
    own = directory_fd is None
    fd_of_directory = (
        os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        if directory_fd is None
        else directory_fd
    )
    try:
        _replace(fd_of_directory, name, path, data, mode)
    finally:
        if own:
            os.close(fd_of_directory)


def _replace(directory: int, name: str, path: str, data: bytes, mode: int) -> None:
    try:
        present = os.lstat(name, dir_fd=directory).st_mode
    except FileNotFoundError:
        present = None
    if present is not None and not (stat.S_ISREG(present) or stat.S_ISLNK(present)):
        # The rename would put a file where a device, FIFO or directory was (/dev/zero given
        # as --state): never ours to replace. A symlink is replaced itself, never followed.
        raise OSError(errno.EEXIST, "not a regular file", path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _attempt in range(100):
        temporary = f".{name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(temporary, flags, 0o600, dir_fd=directory)
            break
        except FileExistsError:
            continue
    else:
        raise OSError(errno.EEXIST, "no unused temporary name", path)
    renamed = False
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            os.fsync(handle.fileno())
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
        renamed = True
        os.fsync(directory)  # the rename itself survives a crash
    except BaseException:
        if not renamed:
            os.unlink(temporary, dir_fd=directory)
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
    # Spelled through the target counts too, wherever its symlinks lead: one planted in a
    # hostile root could carry the path out to a host directory.
    lexical = os.path.normpath(os.path.abspath(path))
    lexical_target = os.path.normpath(os.path.abspath(target))
    return any(
        here == top or here.startswith(top.rstrip("/") + "/")
        for here, top in ((real, real_target), (lexical, lexical_target))
    )
