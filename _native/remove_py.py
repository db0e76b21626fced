"""Pure-Python twin of _native._remove: remove a directory tree, never following a symlink."""

from __future__ import annotations

import os
import stat

__all__ = ["remove_at", "remove_tree"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN = 64  # directory fds held at most, whatever the depth


def remove_tree(path: str | bytes, *, threads: int = 0) -> None:
    """Remove the directory `path` and everything below it (symlinks unlinked, not followed);
    `threads` is accepted for the native signature and unused.

    Without root, a directory the image made unwritable (0500) is opened up (0700) first.
    Raises OSError for what could not be removed.
    """
    del threads  # one thread: Python's unlinks would only contend for the GIL (measured)
    path = os.path.normpath(path)
    parent = os.open(os.path.dirname(path) or ".", _DIR_FLAGS)
    try:
        remove_at(parent, os.path.basename(path))
    finally:
        os.close(parent)


def _open_dir(parent: int, name: str | bytes) -> int:
    """A subdirectory, never through a symlink; an unreadable one is opened up (0700) first."""
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except PermissionError:
        os.chmod(name, stat.S_IRWXU, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)


def _listing(fd: int) -> list[tuple[str, bool]]:
    try:
        with os.scandir(fd) as entries:
            return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    except PermissionError:
        os.fchmod(fd, stat.S_IRWXU)
        with os.scandir(fd) as entries:
            return [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]


def _unlink(fd: int, name: str | bytes, directory: bool) -> None:
    """unlink (rmdir for a directory) in `fd`, opening `fd` up (0700) once if it refuses."""
    remove = os.rmdir if directory else os.unlink
    try:
        remove(name, dir_fd=fd)
    except PermissionError:
        os.fchmod(fd, stat.S_IRWXU)
        remove(name, dir_fd=fd)
    except FileNotFoundError:
        return  # gone already: what removing it was for


class _Frame:
    """A directory on the way down: its fd (-1 once closed), its name in its parent, and the
    subdirectories still to remove."""

    __slots__ = ("below", "fd", "name")

    def __init__(self, fd: int, name: str | bytes, below: list[str]) -> None:
        self.fd = fd
        self.name = name
        self.below = below


def remove_at(parent: int, name: str | bytes) -> None:
    """Remove the directory `name` of the directory fd `parent` and everything below it.

    Depth-first without recursion (shutil.rmtree recursed: RecursionError past ~1,000 levels),
    with at most _OPEN directory fds open: a directory whose fd was closed on the way down is
    opened again as its child's "..", which is the directory it was listed in (the subtree was
    reached through O_NOFOLLOW opens only, in a tree only its owner writes: a scratch tree).
    """
    frames: list[_Frame] = []
    fd = _open_dir(parent, name)
    try:
        while fd != -1:
            listing = _listing(fd)
            for entry, is_dir in listing:
                if not is_dir:
                    _unlink(fd, entry, False)
            frames.append(_Frame(fd, name, [entry for entry, is_dir in listing if is_dir]))
            fd = -1
            while frames and fd == -1:
                frame = frames[-1]
                if frame.below:  # down into the next subdirectory
                    name = frame.below.pop()
                    fd = _open_dir(frame.fd, name)
                    if len(frames) > _OPEN and frames[-_OPEN - 1].fd != -1:
                        os.close(frames[-_OPEN - 1].fd)
                        frames[-_OPEN - 1].fd = -1
                    continue
                frames.pop()  # emptied: up, and remove it
                above = frames[-1] if frames else None
                try:
                    if above is not None and above.fd == -1:
                        above.fd = os.open("..", _DIR_FLAGS, dir_fd=frame.fd)
                finally:
                    os.close(frame.fd)
                _unlink(above.fd if above is not None else parent, frame.name, True)
    finally:
        if fd != -1:
            os.close(fd)
        for frame in frames:
            if frame.fd != -1:
                os.close(frame.fd)
