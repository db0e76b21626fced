"""Path resolution confined to a root filesystem, the way the container itself sees its paths.

A manifest path such as `bin/ls` may pass through `bin -> usr/bin`, or through an absolute link
(`lib64 -> /usr/lib64`) that means `<root>/usr/lib64`, never the scanner's own `/usr/lib64`.
`RootFS.resolve` follows symlinks in the *directory* part of a path as the kernel's
`openat2(RESOLVE_IN_ROOT)` would (absolute targets restart at the root, `..` stops at the root)
and never follows the final component, so a file replaced by a symlink is seen as a symlink.
Directory resolutions are cached: a root has a few thousand directories and tens of thousands
of files.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import Self

from .open_node import open_judged

__all__ = ["MAX_SYMLINK_HOPS", "Identity", "Journal", "RootFS", "Seen", "identity"]

MAX_SYMLINK_HOPS = 40  # the kernel's own limit (MAXSYMLINKS) before ELOOP

# What a reader saw of one path: (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns, st_mode),
# or the errno of a failed lookup (a file that later appears matters as much as one that changes).
Identity = tuple[int, int, int, int, int, int]
# (is a directory listing, path as the reader asked for it) -> what was seen.
Journal = dict[tuple[bool, bytes], Identity | int]


def identity(st: os.stat_result) -> Identity:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_mode)


# What a directory resolution depends on of one component (RootFS.components): a symlink's
# identity (its target cannot change but by a new inode, with a new ctime); for anything else
# its file type alone (the resolution stops there whatever the inode); -errno for a failed lstat.
Seen = Identity | int


def _seen(st: os.stat_result) -> Seen:
    return identity(st) if stat.S_ISLNK(st.st_mode) else stat.S_IFMT(st.st_mode)


def _split(path: bytes) -> tuple[bytes, bytes]:
    head, _, tail = path.rpartition(b"/")
    return head, tail


def _join(base: bytes, name: bytes) -> bytes:
    return base + b"/" + name if base else name


class RootFS:
    """An open root directory with symlink resolution that never leaves it."""

    def __init__(self, root: str | bytes) -> None:
        self.path: bytes = os.path.abspath(os.fsencode(root))
        self.fd: int = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._dirs: dict[bytes, bytes | OSError] = {b"": b""}
        # Every path component the directory resolutions lstat'd -> what was seen (components()).
        self._components: dict[bytes, Identity | int] = {}
        # When a dict, every file opened or lstat'd and every directory listed through this
        # RootFS is noted in it (start_journal): what a reader's result depends on.
        self.journal: Journal | None = None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, path: bytes) -> bytes:
        """Return the physical path (relative, no leading slash) of `path` inside the root.

        Every directory component of the result is a real directory (or does not exist); the
        final component is left as it is. Raises OSError(ELOOP) on a symlink loop.
        """
        parent, _, name = path.strip(b"/").rpartition(b"/")
        # Hot path (a scan resolves every manifest path): the parent is usually cached already.
        physical_parent = self._dirs.get(parent)
        if type(physical_parent) is not bytes:
            physical_parent = self._resolve_dir(parent, 0)
        if name in (b"", b"."):
            return physical_parent
        if name == b"..":
            return _split(physical_parent)[0]
        return physical_parent + b"/" + name if physical_parent else name

    def start_journal(self) -> Journal:
        """Note from now on every path read through this RootFS and what was seen of it."""
        self.journal = {}
        return self.journal

    def stop_journal(self) -> Journal:
        """The paths noted since start_journal (empty if it was not started); noting stops."""
        journal, self.journal = self.journal or {}, None
        return journal

    def unchanged(self, journal: Journal) -> bool:
        """True when every path of `journal` is, seen now through this RootFS, what it was then
        (same identity, or the same failure). Each lookup is an lstat: directory symlinks are
        resolved afresh, and a file whose identity is unchanged has unchanged content (its ctime
        cannot be set back from user space)."""
        for (listing, path), seen in journal.items():
            try:
                if listing:
                    physical = self._resolve_dir(path.strip(b"/"), 0) or b"."
                else:
                    physical = self.resolve(path)
                now: Identity | int = identity(os.lstat(physical, dir_fd=self.fd))
            except OSError as error:
                now = error.errno or 0
            if now != seen:
                return False
        return True

    def _note(self, listing: bool, path: bytes, seen: os.stat_result | OSError) -> None:
        if self.journal is not None:
            self.journal[listing, path] = (
                seen.errno or 0 if isinstance(seen, OSError) else identity(seen)
            )

    def components(self) -> dict[bytes, Seen]:
        """Every path component the directory resolutions so far looked at -> what they saw of
        it (_seen): all those resolutions, and so every path below them, depend on."""
        return dict(self._components)

    def same_components(self, components: dict[bytes, Seen]) -> bool:
        """True when every component of `components` is seen now as it was then: each directory
        resolved then resolves alike now, with no resolution redone (one lstat per component).
        The caller keeps `components` only when their symlinks' ctimes are settled
        (scanner/memo.py), so that a same-tick swap cannot hide."""
        lstat, fd = os.lstat, self.fd
        for path, then in components.items():
            try:
                now = _seen(lstat(path, dir_fd=fd))
            except OSError as error:
                now = -(error.errno or 0)
            if now != then:
                return False
        return True

    def display(self, physical: bytes) -> str:
        """The path as the container sees it (`/usr/bin/ls`), for reports only."""
        return "/" + os.fsdecode(physical)

    def open(self, path: bytes, flags: int = os.O_RDONLY) -> int:
        """Open `path` inside the root without following a symlink in its final component.

        A device, FIFO or socket is refused (NotRegular, an OSError EINVAL) before it is
        opened: see open_node.open_judged.
        """
        try:
            fd, info = open_judged(
                self.resolve(path), dir_fd=self.fd, flags=flags, directories=True
            )
        except OSError as error:
            self._note(False, path, error)
            raise
        if self.journal is not None:
            self._note(False, path, info)
        return fd

    def read_bytes(self, path: bytes, limit: int | None = None) -> bytes:
        """Read a regular file inside the root; raises OSError for anything else."""
        fd = self.open(path)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "not a regular file", os.fsdecode(path))
            if limit is not None and st.st_size >= limit:
                # Refused before reading: a sparse 3 GB file would otherwise cost `limit` bytes
                # of memory (twice, with the join) only to be refused afterwards.
                raise OSError(errno.EFBIG, f"larger than {limit} bytes", os.fsdecode(path))
            chunks = []
            remaining = limit
            while True:
                chunk = os.read(fd, 1 << 20 if remaining is None else min(1 << 20, remaining))
                if not chunk:
                    break
                chunks.append(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                    if remaining <= 0:
                        break
            return b"".join(chunks)
        finally:
            os.close(fd)

    def prefetch(self, paths: list[bytes]) -> None:
        """Ask the kernel to start reading these files now, all at once (POSIX_FADV_WILLNEED).

        Only a hint, for a cold page cache: reading many small files one after the other costs a
        disk round trip each, while queued read-ahead overlaps them. A file that cannot be
        opened here is not an error: the real read that follows reports it.
        """
        for path in paths:
            try:
                fd = self.open(path)
            except OSError:
                continue  # reported by the real read
            try:
                # A FIFO or device (hostile DB) refuses the hint (ESPIPE): the real read says so.
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
            finally:
                os.close(fd)

    def resolve_followed(self, path: bytes) -> bytes:
        """The physical path of `path` with every symlink in it followed, its final component
        too, never leaving the root (etc/os-release -> ../usr/lib/os-release); OSError(ELOOP)
        on a loop."""
        return self._resolve_dir(path.strip(b"/"), 0)

    def lstat(self, path: bytes) -> os.stat_result:
        try:
            st = os.lstat(self.resolve(path), dir_fd=self.fd)
        except OSError as error:
            self._note(False, path, error)
            raise
        self._note(False, path, st)
        return st

    def listdir(self, path: bytes) -> list[bytes]:
        """Names in a directory inside the root (its own symlinks resolved within the root)."""
        try:
            fd = os.open(
                self._resolve_dir(path.strip(b"/"), 0) or b".",
                os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                dir_fd=self.fd,
            )
        except OSError as error:
            self._note(True, path, error)
            raise
        try:
            if self.journal is not None:
                self._note(True, path, os.fstat(fd))
            return [os.fsencode(name) for name in os.listdir(fd)]
        finally:
            os.close(fd)

    def _resolve_dir(self, path: bytes, hops: int) -> bytes:
        cached = self._dirs.get(path)
        if isinstance(cached, OSError):
            raise cached
        if cached is not None:
            return cached
        # Resolve the uncached ancestors first, shallowest first: each then finds its parent
        # cached, so a path of 1,000 components does not recurse 1,000 levels deep.
        ancestors = []
        parent = _split(path)[0]
        while parent and parent not in self._dirs:
            ancestors.append(parent)
            parent = _split(parent)[0]
        for ancestor in reversed(ancestors):
            self._resolve_dir(ancestor, hops)
        try:
            result = self._resolve_dir_uncached(path, hops)
        except OSError as error:
            if hops == 0:
                self._dirs[path] = error  # below the top, an ELOOP may be due to hops used before
            raise
        # A resolution that succeeded is the same whatever hops were used to get here: keep it.
        self._dirs[path] = result
        return result

    def _resolve_dir_uncached(self, path: bytes, hops: int) -> bytes:
        parent, name = _split(path)
        physical_parent = self._resolve_dir(parent, hops)
        if name in (b"", b"."):
            return physical_parent
        if name == b"..":
            return _split(physical_parent)[0]
        candidate = _join(physical_parent, name)
        try:
            st = os.lstat(candidate, dir_fd=self.fd)
        except (FileNotFoundError, NotADirectoryError) as error:
            self._components[candidate] = -(error.errno or 0)
            return candidate  # whatever lies below it will be reported missing
        except OSError as error:
            self._components[candidate] = -(error.errno or 0)
            raise
        self._components[candidate] = _seen(st)
        if not stat.S_ISLNK(st.st_mode):
            return candidate
        if hops >= MAX_SYMLINK_HOPS:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", os.fsdecode(path))
        target = os.readlink(candidate, dir_fd=self.fd)
        base = b"" if target.startswith(b"/") else physical_parent
        lexical = _join(base, target.strip(b"/")) if target.strip(b"/") else base
        return self._resolve_dir(lexical.strip(b"/"), hops + 1)
