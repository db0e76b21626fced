"""Pure-Python twin of `_native._hasher`: hashlib over a thread pool, the same results per path."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import stat
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from .types import Digest, HashResult, HashStatus
from .walker_py import kind_of

__all__ = ["BUFFER_SIZE", "default_jobs", "hash_files", "validate_request"]

# Same read size as the native hasher (see _hasher.pyx for the measurement).
BUFFER_SIZE = 128 * 1024
# Requests handed to a worker at a time: consecutive paths mostly share a parent directory,
# whose fd the worker keeps open, so a chunk costs one parent resolution, not one per file.
CHUNK = 16

_PARENT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_ALGORITHMS = ((Digest.MD5, "md5"), (Digest.SHA1, "sha1"), (Digest.SHA256, "sha256"))
_ALL = int(Digest.MD5 | Digest.SHA1 | Digest.SHA256)
_DOT_COMPONENT = re.compile(rb"(?:^|/)\.\.?(?:/|$)")  # a "." or ".." component


def default_jobs() -> int:
    """Worker threads when jobs=0: more than CPUs, since threads also overlap cold-cache reads."""
    return min(16, max(4, 4 * (os.cpu_count() or 1)))


def validate_request(path: object, flags: object) -> None:
    """Raise TypeError/ValueError unless `path` is a clean relative path and `flags` Digest bits.

    Both implementations reject the same requests before doing any I/O: "", "/abs", b"a//b",
    "." or ".." components, and NUL bytes never reach a syscall.
    """
    if not isinstance(path, bytes):
        raise TypeError(f"request path must be bytes, not {type(path).__name__}")
    if not isinstance(flags, int) or flags < 0 or flags & ~_ALL:
        raise ValueError(f"invalid digest flags {flags!r} for {path!r}")
    if (
        not path
        or path.startswith(b"/")
        or path.endswith(b"/")
        or b"//" in path
        or b"\0" in path
        or _DOT_COMPONENT.search(path) is not None
    ):
        raise ValueError(f"request path must be relative and normalised: {path!r}")


@dataclass(slots=True)
class _Slot:
    """Mutable per-request state; frozen into a HashResult at the end."""

    path: bytes
    flags: int
    status: HashStatus = HashStatus.OK
    errno: int = 0
    st: os.stat_result | None = None
    link_target: bytes | None = None
    digests: dict[int, bytes] | None = None
    head: bytes | None = None


def _failed(slot: _Slot, code: int) -> None:
    slot.errno = code
    slot.status = HashStatus.MISSING if code in (errno.ENOENT, errno.ENOTDIR) else HashStatus.ERROR


class _Parents:
    """The last parent directory a worker opened, component by component, none a symlink.

    This is what the native hasher does without openat2 (open_components in posix.pxd); with
    openat2 it resolves the parent in one syscall, refusing symlinks and escapes atomically. Both
    give the same errno on a tree that is not changing underneath: ELOOP for a symlinked parent,
    ENOENT/ENOTDIR for a missing one. Only a race (a directory swapped for a symlink while we walk
    its components) behaves differently, and even then this twin never opens the final file with
    a followed symlink in its last step.
    """

    def __init__(self, root_fd: int) -> None:
        self.root_fd = root_fd
        self.path: bytes | None = None
        self.fd = -1

    def open(self, parent: bytes) -> int:
        if not parent:
            return self.root_fd
        if parent == self.path:
            return self.fd
        self.close()
        current = self.root_fd
        try:
            for part in parent.split(b"/"):
                try:
                    step = os.open(part, _PARENT_FLAGS, dir_fd=current)
                except NotADirectoryError:
                    # O_DIRECTORY|O_NOFOLLOW on a symlink says ENOTDIR; openat2 says ELOOP.
                    mode = os.stat(part, dir_fd=current, follow_symlinks=False).st_mode
                    if stat.S_ISLNK(mode):
                        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP)) from None
                    raise
                if current != self.root_fd:
                    os.close(current)
                current = step
        except BaseException:
            if current != self.root_fd:
                os.close(current)
            raise
        self.path, self.fd = parent, current
        return current

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
        self.path, self.fd = None, -1


def _lstat_chunk(root_fd: int, slots: Sequence[_Slot]) -> None:
    parents = _Parents(root_fd)
    try:
        for slot in slots:
            parent, _, name = slot.path.rpartition(b"/")
            try:
                parent_fd = parents.open(parent)
                slot.st = os.stat(name, dir_fd=parent_fd, follow_symlinks=False)
            except OSError as error:
                _failed(slot, error.errno or errno.EIO)
                continue
            mode = slot.st.st_mode
            if stat.S_ISLNK(mode):
                slot.status = HashStatus.SYMLINK
                try:
                    slot.link_target = os.readlink(name, dir_fd=parent_fd)
                except OSError as error:
                    _failed(slot, error.errno or errno.EIO)
            elif not stat.S_ISREG(mode):
                slot.status = HashStatus.NOT_REGULAR
    finally:
        parents.close()


def _open_file(parent_fd: int, name: bytes) -> int:
    try:
        # O_NOATIME: reading must not change the scanned root; only the owner (or CAP_FOWNER)
        # may ask for it, so retry without on EPERM.
        return os.open(name, _OPEN_FLAGS | os.O_NOATIME, dir_fd=parent_fd)
    except PermissionError as error:
        if error.errno != errno.EPERM:
            raise
        return os.open(name, _OPEN_FLAGS, dir_fd=parent_fd)


def _hash_one(parent_fd: int, slot: _Slot, want: int, buffer: bytearray) -> None:
    assert slot.st is not None
    name = slot.path.rpartition(b"/")[2]
    fd = _open_file(parent_fd, name)
    try:
        st = os.fstat(fd)
        if (
            st.st_dev != slot.st.st_dev
            or st.st_ino != slot.st.st_ino
            or not stat.S_ISREG(st.st_mode)
        ):
            # Replaced between lstat and open: not the file the caller was told about.
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        hashers = [(bit, hashlib.new(algorithm)) for bit, algorithm in _ALGORITHMS if want & bit]
        view = memoryview(buffer)
        while True:
            count = os.readv(fd, [buffer])  # EINTR is retried by Python (PEP 475)
            if not count:
                break
            if slot.head is None:
                slot.head = bytes(view[: min(count, 4)])
            chunk = view[:count]
            for _, hasher in hashers:
                hasher.update(chunk)  # releases the GIL for >= 2 KiB
        slot.digests = {int(bit): hasher.digest() for bit, hasher in hashers}
    finally:
        os.close(fd)


def _hash_chunk(root_fd: int, reps: Sequence[tuple[_Slot, int]]) -> None:
    parents = _Parents(root_fd)
    buffer = bytearray(BUFFER_SIZE)
    try:
        for slot, want in reps:
            try:
                _hash_one(parents.open(slot.path.rpartition(b"/")[0]), slot, want, buffer)
            except OSError as error:
                _failed(slot, error.errno or errno.EIO)
    finally:
        parents.close()


def _result(slot: _Slot, source: _Slot) -> HashResult:
    st = slot.st
    if st is None:
        return HashResult(slot.path, slot.status, slot.errno)
    digests = source.digests or {}
    flags = slot.flags
    return HashResult(
        slot.path,
        source.status,
        source.errno,
        kind_of(st.st_mode),
        st.st_mode,
        st.st_size,
        st.st_dev,
        st.st_ino,
        st.st_mtime_ns,
        st.st_ctime_ns,
        digests.get(Digest.MD5) if flags & Digest.MD5 else None,
        digests.get(Digest.SHA1) if flags & Digest.SHA1 else None,
        digests.get(Digest.SHA256) if flags & Digest.SHA256 else None,
        slot.link_target,
        (source.head or b"") if flags and source.digests is not None else None,
    )


def hash_files(
    root_fd: int,
    requests: Sequence[tuple[bytes, int]],
    *,
    jobs: int = 0,
) -> list[HashResult]:
    """One HashResult per (relative path, Digest flags) request, in request order.

    Phase 1 lstats every path; phase 2 groups regular files by (dev, ino) so a hard-linked
    inode is read once, with the union of the digests its paths asked for; phase 3 reads each
    such inode once, updating every wanted digest from the same buffer.
    """
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0, not {jobs}")
    slots: list[_Slot] = []
    for path, flags in requests:
        validate_request(path, flags)
        slots.append(_Slot(path, int(flags)))
    workers = jobs or default_jobs()

    def run(work: Callable[[int, Any], None], items: Sequence[Any]) -> None:
        chunks = [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]
        if len(chunks) <= 1 or workers == 1:
            for chunk in chunks:
                work(root_fd, chunk)
            return
        with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            for _ in pool.map(lambda chunk: work(root_fd, chunk), chunks):
                pass

    run(_lstat_chunk, slots)

    # Group regular files that want a digest by inode; the first path is the representative.
    groups: dict[tuple[int, int], tuple[_Slot, list[int]]] = {}
    for slot in slots:
        if slot.status is HashStatus.OK and slot.flags and slot.st is not None:
            key = (slot.st.st_dev, slot.st.st_ino)
            if key in groups:
                groups[key][1][0] |= slot.flags
            else:
                groups[key] = (slot, [slot.flags])
    reps = [(rep, want[0]) for rep, want in groups.values()]
    run(_hash_chunk, reps)

    results = []
    for slot in slots:
        source = slot
        if slot.status is HashStatus.OK and slot.flags and slot.st is not None:
            source = groups[(slot.st.st_dev, slot.st.st_ino)][0]
        results.append(_result(slot, source))
    return results
