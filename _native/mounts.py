"""Mount ids and the mount points below a directory, as /proc shows them (the walkers' fallback)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

__all__ = [
    "below",
    "file_system_path",
    "in_file_system",
    "mount_id",
    "mount_points",
    "parse_mountinfo",
]

# mountinfo writes a space, tab, newline and backslash in a path as \ooo (the kernel's
# seq_path_root with " \t\n\\"); nothing else is escaped.
_ESCAPE = re.compile(rb"\\([0-7]{3})")


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


def _unescape(field: bytes) -> bytes:
    return _ESCAPE.sub(lambda found: bytes([int(found[1], 8) & 0xFF]), field)


def _lines(text: bytes) -> list[list[bytes]]:
    """The fields of each well-formed line of a mountinfo text."""
    return [
        fields
        for fields in (line.split(b" ") for line in text.split(b"\n"))
        if len(fields) >= 5 and fields[0].isdigit() and fields[1].isdigit()
    ]


def parse_mountinfo(text: bytes) -> list[tuple[int, int, bytes]]:
    """(mount id, parent id, mount point) of each well-formed line of a mountinfo text."""
    return [(int(fields[0]), int(fields[1]), _unescape(fields[4])) for fields in _lines(text)]


def in_file_system(text: bytes, identifier: int, path: bytes) -> bytes | None:
    """Where `path` (absolute, on mount `identifier`) lies in its file system: the mount's root
    there (mountinfo's fourth field) joined with the path below its mount point; two mounts of
    one file system show the same directory where these are equal. None when not told."""
    for fields in _lines(text):
        if int(fields[0]) != identifier:
            continue
        root, point = _unescape(fields[3]).rstrip(b"/"), _unescape(fields[4]).rstrip(b"/")
        if path.rstrip(b"/") != point and not path.startswith(point + b"/"):
            return None
        return root + path.rstrip(b"/")[len(point) :] or b"/"
    return None


def file_system_path(fd: int) -> bytes | None:
    """in_file_system for the directory `fd`, from /proc; None when /proc cannot tell."""
    identifier, path = mount_id(fd), _path(fd)
    if identifier is None or path is None:
        return None
    try:
        with open("/proc/self/mountinfo", "rb") as handle:
            return in_file_system(handle.read(), identifier, path)
    except OSError:
        return None


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
    path = _path(root_fd)
    if identifier is None or path is None:
        return None
    try:
        with open("/proc/self/mountinfo", "rb") as handle:
            text = handle.read()
    except OSError:
        return None
    return below(parse_mountinfo(text), path, identifier)


def _path(fd: int) -> bytes | None:
    """The absolute path of the directory `fd`, when that path still leads to it."""
    try:
        path = os.readlink(f"/proc/self/fd/{fd}".encode())
        # A path outside this process's root reads "(unreachable)/..." and mountinfo cannot be
        # matched with it; a removed directory gains " (deleted)", but so may a directory's own
        # name: the path is trusted only when it leads to the very directory.
        opened, found = os.fstat(fd), os.stat(path)
    except OSError:
        return None
    if not path.startswith(b"/") or (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
        return None
    return path
