"""Open a regular file beneath a directory, never leaving it through a symlink or `..`."""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_LINKS", "Escape", "open_beneath"]

MAX_LINKS = 40  # symlinks followed in one resolution, as the kernel's ELOOP limit
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: a FIFO planted in place of a file must not block the open (it is refused below).
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Escape(ValueError):
    """The name leads out of the directory, through too many symlinks, or to something that is
    not a regular file. FileNotFoundError is raised as such when a component is missing."""


def _components(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def open_beneath(top: int, name: str) -> int:
    """An fd (O_RDONLY) on the regular file `name` below the directory fd `top` (not owned).

    What openat2's RESOLVE_BENEATH does, in user space (Python has no openat2): each component
    is opened with O_NOFOLLOW from the fd of the one before; a symlink is read and its target's
    components resolved in turn, so relative links that stay inside work (old `docker save`
    links a repeated layer to the first copy: `../ID/layer.tar`). An absolute target or a `..`
    above `top` is refused. `..` returns to the fd we came down through, never the directory's
    own `..` entry, so renaming directories meanwhile cannot lead out either.
    """
    pending = _components(name)
    pending.reverse()  # a stack: the next component last
    trail = [top]  # directory fds from top down; trail[1:] are ours
    links = 0
    try:
        while pending:
            part = pending.pop()
            if part == "..":
                if len(trail) == 1:
                    raise Escape(f"{name!r} leads out of the image directory")
                os.close(trail.pop())
                continue
            parent = trail[-1]
            info = os.stat(part, dir_fd=parent, follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise Escape(f"{name!r}: more than {MAX_LINKS} symlinks (a loop?)")
                target = os.readlink(part, dir_fd=parent)
                if target.startswith("/"):
                    raise Escape(
                        f"{name!r}: a symlink to {target!r}, outside the image directory; refused"
                    )
                pending.extend(reversed(_components(target)))
                continue
            if pending:
                if not stat.S_ISDIR(info.st_mode):
                    raise Escape(f"{name!r}: {part!r} is not a directory")
                trail.append(os.open(part, _DIR_FLAGS, dir_fd=parent))
                continue
            if not stat.S_ISREG(info.st_mode):
                raise Escape(f"{name!r} is not a regular file")
            fd = os.open(part, _FILE_FLAGS, dir_fd=parent)
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (info.st_dev, info.st_ino):
                os.close(fd)  # replaced between the two looks (O_NOFOLLOW kept a link out)
                raise Escape(f"{name!r} changed while it was opened")
            return fd
        raise Escape(f"{name!r} names the image directory itself, not a file")
    finally:
        for fd in trail[1:]:
            os.close(fd)
