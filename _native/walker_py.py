"""Pure-Python twin of `_native._walker`: the same entries, errors and order, with os.* calls."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass

from . import mounts
from .types import FileKind, WalkEntry, WalkError

__all__ = ["kind_of", "walk"]

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_KINDS: tuple[tuple[int, FileKind], ...] = (
    (stat.S_IFREG, FileKind.REGULAR),
    (stat.S_IFDIR, FileKind.DIRECTORY),
    (stat.S_IFLNK, FileKind.SYMLINK),
    (stat.S_IFIFO, FileKind.FIFO),
    (stat.S_IFSOCK, FileKind.SOCKET),
    (stat.S_IFCHR, FileKind.CHAR_DEVICE),
    (stat.S_IFBLK, FileKind.BLOCK_DEVICE),
)
_KIND_BY_FMT = dict(_KINDS)


def kind_of(mode: int) -> FileKind:
    """FileKind of an lstat st_mode."""
    return _KIND_BY_FMT.get(stat.S_IFMT(mode), FileKind.OTHER)


def entry_from_stat(path: bytes, st: os.stat_result, mount_point: bool = False) -> WalkEntry:
    """WalkEntry for `path` from its lstat result."""
    return WalkEntry(
        path,
        kind_of(st.st_mode),
        st.st_mode,
        st.st_size,
        st.st_dev,
        st.st_ino,
        st.st_nlink,
        st.st_mtime_ns,
        st.st_ctime_ns,
        mount_point,
    )


def _error(path: bytes, code: int) -> WalkError:
    return WalkError(path, code, os.strerror(code))


def _open_dir(root_fd: int, rel: bytes) -> int:
    """Open directory `rel` below root_fd, refusing a symlink as the last component.

    The native walker uses openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS); on a tree that is not
    changing underneath, every parent of `rel` is a directory this walk just listed, so plain
    openat gives the same result. O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR where openat2
    says ELOOP: translate, so both report the same errno.
    """
    try:
        return os.open(rel or b".", _DIR_FLAGS, dir_fd=root_fd)
    except NotADirectoryError:
        try:
            is_link = stat.S_ISLNK(os.stat(rel, dir_fd=root_fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
        raise


@dataclass(frozen=True, slots=True)
class _Unchanged:
    """walk(unchanged=..., matched=...): the identities known, where matches go, walk's skips."""

    known: Mapping[bytes, tuple[object, ...]]
    matched: list[bytes]
    skipped: frozenset[bytes]

    def matches(self, path: bytes, st: os.stat_result) -> bool:
        """True (and `path` noted) when this regular file's identity is the known one."""
        recorded = self.known.get(path)
        if (
            recorded is None
            or not stat.S_ISREG(st.st_mode)
            or tuple(recorded[:6]) != _identity(st)
            or path in self.skipped
        ):
            return False
        self.matched.append(path)
        return True


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


def _list_dir(
    root_fd: int,
    rel: bytes,
    unchanged: _Unchanged | None = None,
    mount_points: frozenset[bytes] = frozenset(),
) -> list[WalkEntry | WalkError] | WalkError:
    """Entries of one directory sorted by name bytes, or the error that kept it from being read
    (a regular file `unchanged` matches is left out: its path goes to its matched list).
    An entry whose path is in `mount_points` is flagged as a mount point and never matched."""
    try:
        fd = _open_dir(root_fd, rel)
    except OSError as error:
        return _error(rel, error.errno or errno.EIO)
    try:
        # Read every name first and close the directory before descending, so the walk holds
        # at most one directory fd (plus the root's) whatever the depth.
        names = sorted(os.fsencode(name) for name in os.listdir(fd))
        prefix = rel + b"/" if rel else b""
        listing: list[WalkEntry | WalkError] = []
        for name in names:
            path = prefix + name
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except OSError as error:
                listing.append(_error(path, error.errno or errno.EIO))
            else:
                if mount_points and path in mount_points:
                    listing.append(entry_from_stat(path, st, True))
                elif unchanged is None or not unchanged.matches(path, st):
                    listing.append(entry_from_stat(path, st))
        return listing
    except OSError as error:
        return _error(rel, error.errno or errno.EIO)
    finally:
        os.close(fd)


def walk(
    root: str | bytes,
    *,
    skip: Collection[bytes] = (),
    one_file_system: bool = True,
    unchanged: Mapping[bytes, tuple[object, ...]] | None = None,
    matched: list[bytes] | None = None,
) -> Iterator[WalkEntry | WalkError]:
    """Every entry below `root`, depth-first pre-order, names sorted as bytes; errors as data.

    Symlinks are yielded, never followed. Paths in `skip` are neither yielded nor descended.
    A mount point (another file system, or a bind mount of the same one: one of mountinfo's
    mount points below the root, where the native walker compares statx mount ids) is yielded
    with `mount_point` set; with `one_file_system`, it is not descended, nor is a directory on
    another device (a btrfs subvolume), and it is never matched (below).
    A regular file whose (dev, ino, size, mtime_ns, ctime_ns, mode) are the first six items of
    `unchanged[path]` is not yielded: its path is appended to `matched` instead (complete once
    the walk is exhausted; a rescan's unchanged files cost no entry object).
    Raises OSError only when `root` itself cannot be opened.
    """
    skipped = frozenset(bytes(path) for path in skip)
    if unchanged is not None and matched is None:
        raise TypeError("walk: `unchanged` needs a `matched` list")
    identities = (
        _Unchanged(unchanged, matched, skipped) if unchanged and matched is not None else None
    )
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        root_dev = os.fstat(root_fd).st_dev
        # Python has no statx: the mount points below the root are read from mountinfo once.
        # Without /proc only another device tells a mount point (a bind is then not told).
        inner = mounts.mount_points(root_fd) or frozenset()
        first = _list_dir(root_fd, b"", identities, inner)
        if isinstance(first, WalkError):
            raise OSError(first.errno, first.message, os.fsdecode(root))
        # A stack of (listing, next index): memory is the listings along the current path only.
        stack: list[tuple[list[WalkEntry | WalkError], list[int]]] = [(first, [0])]
        while stack:
            listing, cursor = stack[-1]
            if cursor[0] == len(listing):
                stack.pop()
                continue
            item = listing[cursor[0]]
            cursor[0] += 1
            if item.path in skipped:
                continue
            yield item
            if (
                isinstance(item, WalkEntry)
                and item.kind is FileKind.DIRECTORY
                and (not one_file_system or (item.dev == root_dev and not item.mount_point))
            ):
                below = _list_dir(root_fd, item.path, identities, inner)
                if isinstance(below, WalkError):
                    yield below
                else:
                    stack.append((below, [0]))
    finally:
        os.close(root_fd)
