"""Pure-Python twin of _prefetch: early read-ahead of the files package manifests list, in a thread."""

from __future__ import annotations

import os
import re
import stat
import threading

__all__ = ["Prefetch", "start"]

MANIFEST_LIMIT = 16 << 20  # bytes read of one manifest (as _prefetch.pyx)
ADVISE_STEP = 512 * 1024
WARM_STREAK = 32
BIG = 1024 * 1024  # the hasher's: files this large are claimed first, largest first
PARENT_MAX = 4096
# One manifest line: the digest, blanks, leading slashes, then the path (as _prefetch.pyx).
_LINE = re.compile(rb"[^ \t]*[ \t]*/*(.*)", re.DOTALL)
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _clean(path: bytes) -> bool:
    """A relative, normalised path: no "", ".", ".." component, no leading or trailing "/", no NUL."""
    return (
        bool(path)
        and b"\0" not in path
        and all(part not in (b"", b".", b"..") for part in path.split(b"/"))
    )


def _open_beneath(root_fd: int, path: bytes, flags: int) -> int:
    """Open `path` below root_fd one component at a time, following no symlink (OSError if not)."""
    current = root_fd
    parts = path.split(b"/")
    try:
        for part in parts[:-1]:
            step = os.open(
                part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current
            )
            if current != root_fd:
                os.close(current)
            current = step
        return os.open(parts[-1], flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=current)
    finally:
        if current != root_fd:
            os.close(current)


class Prefetch:
    """A running early read-ahead; `stop()` ends it and says what it advised."""

    def __init__(
        self, root_fd: int, directory: bytes, suffix: bytes, budget: int, probe: bool
    ) -> None:
        self._root_fd = root_fd
        self._directory = directory
        self._suffix = suffix
        self._budget = budget
        self._probe = probe
        self._stop = threading.Event()
        self._parent: tuple[bytes, int] | None = None
        self.files = 0
        self.bytes = 0
        self._streak = 0
        self._thread: threading.Thread | None = None
        if root_fd >= 0:
            self._thread = threading.Thread(
                target=self._run, name="scan-root prefetch", daemon=True
            )
            self._thread.start()

    def stop(self) -> tuple[int, int]:
        """Stop the thread (it finishes the file in hand) and return (files, bytes) advised."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._root_fd >= 0:
            self._close_parent()
            os.close(self._root_fd)
            self._root_fd = -1
        return self.files, self.bytes

    def wait(self) -> tuple[int, int]:
        """Wait until the thread has advised all it would, then stop; (files, bytes) advised."""
        if self._thread is not None:
            self._thread.join()
        return self.stop()

    def __del__(self) -> None:
        if getattr(self, "_root_fd", -1) >= 0:
            self.stop()

    def _close_parent(self) -> None:
        if self._parent is not None and self._parent[1] != self._root_fd:
            os.close(self._parent[1])
        self._parent = None

    def _parent_fd(self, parent: bytes) -> int:
        """An O_PATH fd of `parent` below the root (b"": the root), reused while unchanged."""
        if self._parent is not None and self._parent[0] == parent:
            return self._parent[1]
        self._close_parent()
        if len(parent) >= PARENT_MAX:
            raise ValueError("parent directory path too long")
        fd = (
            self._root_fd
            if not parent
            else _open_beneath(self._root_fd, parent, os.O_PATH | os.O_DIRECTORY)
        )
        self._parent = (parent, fd)
        return fd

    def _run(self) -> None:
        """Collect the listed paths, lstat them, then advise: files of >= BIG bytes first, largest
        first (the order the hasher's MD5 lanes claim them in), then the others in manifest order."""
        listed = self._read_manifests()
        sized = []
        for path in listed:
            if self._stop.is_set():
                return
            size = self._lstat_size(path)
            if size > 0:
                sized.append((path, size))
        big = sorted((item for item in sized if item[1] >= BIG), key=lambda item: -item[1])
        for path, _size in big + [item for item in sized if item[1] < BIG]:
            if self._stop.is_set() or self._advise(path):
                return

    def _read_manifests(self) -> list[bytes]:
        """The clean paths every manifest lists, in directory order; [] on a warm cache."""
        listed: list[bytes] = []
        checked = False
        try:
            dir_fd = _open_beneath(self._root_fd, self._directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return listed  # a hint: no manifest directory, nothing to advise
        try:
            names = [
                name
                for name in map(os.fsencode, os.listdir(dir_fd))
                if len(name) > len(self._suffix) and name.endswith(self._suffix)
            ]
            # First pass: queue every manifest's read, until WARM_STREAK in a row are cached.
            streak = 0
            for name in names:
                if streak >= WARM_STREAK or self._stop.is_set():
                    break
                fd = self._open_manifest(dir_fd, name)
                if fd is None:
                    continue
                try:
                    if self._probe and _cached(fd):
                        streak += 1
                    else:
                        streak = 0
                        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_WILLNEED)
                finally:
                    os.close(fd)
            for name in names:
                if self._stop.is_set():
                    break
                fd = self._open_manifest(dir_fd, name)
                if fd is None:
                    continue
                try:
                    data = _read_all(fd, MANIFEST_LIMIT)
                finally:
                    os.close(fd)
                for line in data.split(b"\n"):
                    path = _LINE.match(line).group(1)  # type: ignore[union-attr]  # any line matches
                    if _clean(path):
                        listed.append(path)
                if self._probe and not checked and len(listed) >= 2 * WARM_STREAK:
                    checked = True
                    if self._warm(listed):
                        return []
        finally:
            os.close(dir_fd)
        return listed

    @staticmethod
    def _open_manifest(dir_fd: int, name: bytes) -> int | None:
        """An fd of the regular file `name` in the manifest directory, or None."""
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=dir_fd)
        except OSError:
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def _warm(self, listed: list[bytes]) -> bool:
        """The first WARM_STREAK regular files listed are all cached: nothing to do."""
        probed = 0
        for path in listed:
            if self._lstat_size(path) <= 0:
                continue
            fd = self._open(path)
            if fd is None:
                return False
            try:
                if not _cached(fd):
                    return False
            finally:
                os.close(fd)
            probed += 1
            if probed == WARM_STREAK:
                return True
        return False

    def _lstat_size(self, path: bytes) -> int:
        """The size of a regular, non-empty file at path below the root, else -1."""
        parent, _slash, name = path.rpartition(b"/")
        try:
            st = os.stat(name, dir_fd=self._parent_fd(parent), follow_symlinks=False)
        except (OSError, ValueError):
            return -1
        return st.st_size if stat.S_ISREG(st.st_mode) and st.st_size > 0 else -1

    def _open(self, path: bytes) -> int | None:
        """An fd of the regular file at path (O_NONBLOCK|O_NOFOLLOW, then fstat), or None."""
        parent, _slash, name = path.rpartition(b"/")
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=self._parent_fd(parent))
        except (OSError, ValueError):
            return None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        return fd

    def _advise(self, path: bytes) -> bool:
        """Advise one listed regular file; True when the thread should stop (budget, warm cache)."""
        fd = self._open(path)
        if fd is None:
            return False
        try:
            if self._probe and _cached(fd):
                self._streak += 1
                return self._streak >= WARM_STREAK
            self._streak = 0
            size = os.fstat(fd).st_size
            for offset in range(0, size, ADVISE_STEP):
                os.posix_fadvise(fd, offset, ADVISE_STEP, os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)
        self.files += 1
        self.bytes += size
        return self.bytes >= self._budget


def _cached(fd: int) -> bool:
    """Whether the first byte is in the page cache: RWF_NOWAIT fails (EAGAIN) rather than wait."""
    try:
        return os.preadv(fd, [bytearray(1)], 0, os.RWF_NOWAIT) == 1
    except OSError:
        return False  # EAGAIN, or a kernel without RWF_NOWAIT: taken as not cached


def _read_all(fd: int, limit: int) -> bytes:
    chunks = []
    total = 0
    while total < limit:
        chunk = os.read(fd, limit - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


def start(
    root: bytes, directory: bytes, suffix: bytes, *, budget: int = 128 << 20, probe: bool = True
) -> Prefetch:
    """Start advising the files listed by `root/directory/*suffix`; a Prefetch to stop later.

    A root that cannot be opened, or a missing directory, gives a Prefetch that advised nothing.
    """
    root_fd = -1
    if b"\0" not in root + directory + suffix and _clean(directory) and budget > 0:
        try:
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            root_fd = -1
    return Prefetch(root_fd, directory, suffix, budget, probe)
