"""Mount ids and the mount points below a directory, as /proc shows them (the walkers' fallback)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = ["below", "mount_id", "mount_points", "parse_mountinfo"]

# mountinfo writes a space, tab, newline and backslash in a path as \ooo (the kernel's
# seq_path_root with " \t\n\\"); nothing else is escaped.
_ESCAPE = re.compile(rb"\\([0-7]{3})")
# A directory path gains this when the directory was removed; it then matches no mount.
_DELETED = b" (deleted)"


def mount_id(fd: int) -> int | None:
    """Id of the mount `fd` lies on (/proc/self/fdinfo, Linux >= 3.15: the id statx's
    STATX_MNT_ID and mountinfo's first field give), or None when /proc cannot tell."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", "rb") as handle:
            for line in handle:
                if line.startswith(b"mnt_id:"):
                    return int(line[7:])
    except (OSError, ValueError):
        return None
    return None


def parse_mountinfo(text: bytes) -> list[tuple[int, int, bytes]]:
    """(mount id, parent id, mount point) of each well-formed line of a mountinfo text."""
    mounts = []
    for line in text.split(b"\n"):
        fields = line.split(b" ")
        if len(fields) < 5 or not fields[0].isdigit() or not fields[1].isdigit():
            continue
        point = _ESCAPE.sub(lambda found: bytes([int(found[1], 8) & 0xFF]), fields[4])
        mounts.append((int(fields[0]), int(fields[1]), point))
    return mounts


def below(mounts: Iterable[tuple[int, int, bytes]], root: bytes, root_id: int) -> frozenset[bytes]:
    """Paths, relative to `root` (an absolute path on mount `root_id`), of the mount points
    below it: mounts on `root_id` under that path, then mounts on those, and so on. A mount
    whose parent is not in that tree (stacked on the root's path after it was opened, or
    beside it) is not below the directory the walk holds, whatever its path says."""
    prefix = root.rstrip(b"/") + b"/"
    children: dict[int, list[tuple[int, bytes]]] = {}
    for identifier, parent, point in mounts:
        if point.startswith(prefix) and len(point) > len(prefix):
            children.setdefault(parent, []).append((identifier, point[len(prefix) :]))
    found: set[bytes] = set()
    reached = {root_id}
    pending = [root_id]
    while pending:  # each mount id is expanded once: bounded by the number of lines
        for identifier, relative in children.get(pending.pop(), ()):
            found.add(relative)
            if identifier not in reached:
                reached.add(identifier)
                pending.append(identifier)
    return frozenset(found)


def mount_points(root_fd: int) -> frozenset[bytes] | None:
    """Paths, relative to the directory `root_fd` (no leading slash), of every mount point
    below it, from /proc/self/mountinfo; None when /proc cannot tell."""
    identifier = mount_id(root_fd)
    try:
        path = os.readlink(f"/proc/self/fd/{root_fd}".encode())
        with open("/proc/self/mountinfo", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    # A path outside this process's root reads "(unreachable)/..." and mountinfo cannot be
    # matched with it; a removed directory has nothing mounted below it any more.
    if identifier is None or not path.startswith(b"/") or path.endswith(_DELETED):
        return None
    return below(parse_mountinfo(text), path, identifier)
