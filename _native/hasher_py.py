"""Pure-Python twin of `_native._hasher`: hashlib over a thread pool, the same results per path."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import xxhash

from . import cpus, matcher_py
from .hashreq_py import (
    MAX_WINDOWS,
    ContentOptions,
    content_options,
    content_windows,
    validate_request,
)
from .interface import ContentMatcher
from .throttle import CpuBudget
from .types import Digest, Extents, HashResult, HashStatus
from .walker_py import kind_of

__all__ = [
    "BUFFER_SIZE",
    "MAX_WINDOWS",
    "ContentOptions",
    "content_options",
    "content_windows",
    "default_jobs",
    "hash_files",
    "validate_request",
]

# Same read size as the native hasher (see _hasher.pyx for the measurement).
BUFFER_SIZE = 128 * 1024
# Requests handed to a worker at a time: consecutive paths mostly share a parent directory,
# whose fd the worker keeps open, so a chunk costs one parent resolution, not one per file.
CHUNK = 16

_PARENT_FLAGS = os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_ALGORITHMS = ((Digest.MD5, "md5"), (Digest.SHA1, "sha1"), (Digest.SHA256, "sha256"))
_XXH3 = int(Digest.XXH3)
_CONTENT = int(Digest.CONTENT)


def default_jobs() -> int:
    """Worker threads when jobs=0: more than CPUs, since threads also overlap cold-cache reads;
    but under a cgroup CPU quota, only as many as the quota's CPUs (rounded up, at least 1).

    A quota is shared with the application in the same container: threads beyond it do not
    scan faster, they exhaust the quota early in each period and the kernel then throttles the
    whole cgroup, the application included, until the next one (cpus.cpu_limit).
    """
    limit = cpus.cpu_limit()
    if limit is not None:
        return limit
    return min(16, max(4, 4 * (os.cpu_count() or 1)))


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
    scanned: bool = False
    hits: tuple[tuple[int, int], ...] = ()
    hit_total: int = 0
    windows: tuple[tuple[int, bytes], ...] = ()


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


def _lstat_chunk(root_fd: int, slots: Sequence[_Slot], budget: CpuBudget | None) -> None:
    parents = _Parents(root_fd)
    if budget is not None:
        budget.pace()
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


def _hash_one(
    parent_fd: int,
    slot: _Slot,
    want: int,
    buffer: bytearray,
    content: ContentOptions | None,
    budget: CpuBudget | None,
    extents: Extents | None,
) -> None:
    assert slot.st is not None
    placed = _placed(extents, slot.st)
    if placed is not None:
        fd = os.dup(placed[0])  # read with pread at placed[1]: no shared file offset
    else:
        fd = _open_file(parent_fd, slot.path.rpartition(b"/")[2])
    try:
        st = os.fstat(fd)
        if placed is None and (
            st.st_dev != slot.st.st_dev
            or st.st_ino != slot.st.st_ino
            or not stat.S_ISREG(st.st_mode)
        ):
            # Replaced between lstat and open: not the file the caller was told about.
            raise OSError(errno.ESTALE, os.strerror(errno.ESTALE))
        hashers: list[tuple[int, Any]] = [
            (bit, hashlib.new(algorithm)) for bit, algorithm in _ALGORITHMS if want & bit
        ]
        if want & _XXH3:
            hashers.append((_XXH3, xxhash.xxh3_128()))
        # Content: matched chunk by chunk as read (as the native DFA is fed), unless the file
        # (lstat size, as the native hasher decides) is over content_limit. Files up to
        # window_file_limit are also kept whole, to cut windows around captured hits.
        stream = None
        whole: bytearray | None = None
        if content is not None and want & _CONTENT and slot.st.st_size <= content.content_limit:
            stream = matcher_py.Stream(content.matcher, content.max_hits)
            if content.capture and slot.st.st_size <= content.window_file_limit:
                whole = bytearray()
        if stream is None and not hashers:
            # Wanted only to be searched, and over content_limit: nothing to read it for.
            slot.digests = {}
            return
        view = memoryview(buffer)
        done = 0
        while True:
            count = _read_next(fd, buffer, placed, slot.st.st_size, done)
            if not count:
                break
            done += count
            if budget is not None:
                budget.pace()  # --max-cpu: a large file is paced read by read
            if slot.head is None:
                slot.head = bytes(view[: min(count, 4)])
            chunk = view[:count]
            for _, hasher in hashers:
                hasher.update(chunk)  # releases the GIL for >= 2 KiB
            if stream is not None:
                stream.feed(chunk)
                if whole is not None:
                    assert content is not None
                    if len(whole) + count <= content.window_file_limit:
                        whole += chunk
                    else:
                        whole = None  # grew past the limit since lstat: hits, no windows
        slot.digests = {int(bit): hasher.digest() for bit, hasher in hashers}
        if stream is not None:
            assert content is not None
            slot.scanned = True
            slot.hits = tuple(stream.hits)
            slot.hit_total = stream.total
            if whole is not None:
                slot.windows = content_windows(
                    slot.hits, content.capture, whole, content.window_before, content.window_after
                )
    finally:
        os.close(fd)


def _placed(extents: Extents | None, st: os.stat_result) -> tuple[int, int, int] | None:
    """(fd, offset, length) of the extent holding this file's bytes, or None (see Extents)."""
    if extents is None or st.st_dev != extents.dev:
        return None
    placed = extents.by_inode.get(st.st_ino)
    return placed if placed is not None and placed[2] == st.st_size else None


def _read_next(
    fd: int, buffer: bytearray, placed: tuple[int, int, int] | None, size: int, done: int
) -> int:
    """Read the next bytes into `buffer` (`done` already read): to EOF, or within the extent."""
    if placed is None:
        return os.readv(fd, [buffer])  # EINTR is retried by Python (PEP 475)
    room = min(len(buffer), size - done)
    if room <= 0:
        return 0
    count = os.preadv(fd, [memoryview(buffer)[:room]], placed[1] + done)
    if count == 0:  # the extent's file ends early (a truncated archive): no digest
        raise OSError(errno.ENODATA, os.strerror(errno.ENODATA))
    return count


def _hash_chunk(
    root_fd: int,
    reps: Sequence[tuple[_Slot, int]],
    content: ContentOptions | None,
    budget: CpuBudget | None,
    extents: Extents | None,
) -> None:
    parents = _Parents(root_fd)
    buffer = bytearray(BUFFER_SIZE)
    if budget is not None:
        budget.pace()
    try:
        for slot, want in reps:
            try:
                parent_fd = parents.open(slot.path.rpartition(b"/")[0])
                _hash_one(parent_fd, slot, want, buffer, content, budget, extents)
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
    content = bool(flags & _CONTENT) and source.digests is not None
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
        source.scanned if content else False,
        source.hits if content else (),
        source.hit_total if content else 0,
        source.windows if content else (),
        digests.get(_XXH3) if flags & _XXH3 else None,
    )


def hash_files(
    root_fd: int,
    requests: Sequence[tuple[bytes, int]],
    *,
    jobs: int = 0,
    matcher: ContentMatcher | None = None,
    capture: Iterable[int] = frozenset(),
    max_hits: int = 64,
    window_before: int = 256,
    window_after: int = 65536,
    window_file_limit: int = 8 << 20,
    content_limit: int = 256 << 20,
    cpu_budget: CpuBudget | None = None,
    extents: Extents | None = None,
) -> list[HashResult]:
    """One HashResult per (relative path, Digest flags) request, in request order.

    Phase 1 lstats every path; phase 2 groups regular files by (dev, ino) so a hard-linked
    inode is read once, with the union of the digests its paths asked for; phase 3 reads each
    such inode once, updating every wanted digest from the same buffer and, for Digest.CONTENT,
    feeding `matcher` (a matcher_py.Matcher: another ContentMatcher is a TypeError) from it
    too: see HashResult for what comes back.
    With `cpu_budget` (--max-cpu), workers sleep whenever the process is ahead of it. With
    `extents`, a regular file they place (device, inode, length) is read from its extent.
    """
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0, not {jobs}")
    if cpu_budget is not None and not isinstance(cpu_budget, CpuBudget):
        raise TypeError(f"cpu_budget must be a CpuBudget, not {type(cpu_budget).__name__}")
    if extents is not None and not isinstance(extents, Extents):
        raise TypeError(f"extents must be an Extents, not {type(extents).__name__}")
    slots: list[_Slot] = []
    for path, flags in requests:
        validate_request(path, flags)
        slots.append(_Slot(path, int(flags)))
    content = content_options(
        matcher_py.Matcher,
        any(slot.flags & _CONTENT for slot in slots),
        matcher,
        capture,
        max_hits,
        window_before,
        window_after,
        window_file_limit,
        content_limit,
    )
    workers = jobs or default_jobs()

    def run(work: Callable[..., None], items: Sequence[Any], *extra: Any) -> None:
        chunks = [items[start : start + CHUNK] for start in range(0, len(items), CHUNK)]
        if len(chunks) <= 1 or workers == 1:
            for chunk in chunks:
                work(root_fd, chunk, *extra)
            return
        # Imported here: concurrent.futures (and logging) cost ~8 ms of start-up, and the
        # Cython core, which imports this module for validate_request, never needs them.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(workers, len(chunks))) as pool:
            for _ in pool.map(lambda chunk: work(root_fd, chunk, *extra), chunks):
                pass

    run(_lstat_chunk, slots, cpu_budget)

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
    run(_hash_chunk, reps, content, cpu_budget, extents)

    results = []
    for slot in slots:
        source = slot
        if slot.status is HashStatus.OK and slot.flags and slot.st is not None:
            source = groups[(slot.st.st_dev, slot.st.st_ino)][0]
        results.append(_result(slot, source))
    return results
