# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython multi-threaded hasher: pthreads + OpenSSL EVP, every digest of a file from one read.

Parts: this module turns requests into C records and the records into HashResults; _hash_pool
runs each phase on threads and plans phase 2; _hash_open opens beneath the root (phase 1's
lstat, phase 3's opens); _hash_digest is the one-pass read; _hash_lanes the multi-buffer MD5;
_hash_readahead the fadvise thread; _hashjob.pxd the records they share. Request rules both cores
apply are in hashreq_py.

Design (the pure-Python twin `hasher_py` returns identical results):

* Requests are validated and copied into a malloc'd array of small C structs; the Python bytes
  of the paths are kept referenced, so their buffers stay valid while the GIL is released.
* Phase 1 (threads): fstatat(AT_SYMLINK_NOFOLLOW) every path relative to its parent directory,
  readlinkat for symlinks. Phase 2 (one thread): group regular files by (dev, ino) with a sort, so
  a hard-linked inode is read once with the union of the digests its paths want. Phase 3
  (threads): open, fstat (must still be the same dev/ino, else ESTALE), read into a per-thread
  buffer and feed every wanted EVP context from it. The GIL is released for all three phases:
  they are syscalls and hashing, nothing touches Python objects; results are built afterwards.
* Parent directories are opened with open_beneath() (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS,
  or a component-wise O_NOFOLLOW walk when the kernel lacks openat2) and kept open per worker
  while consecutive paths share them; the file itself is opened with O_NOFOLLOW relative to that
  fd. A directory swapped for a symlink mid-scan therefore gives ELOOP, never a file outside root.
* Workers claim CHUNK indices at a time from one atomic counter; the calling thread works too, and
  if pthread_create fails the remaining work simply runs on the threads that exist.
* Read-ahead: one more thread walks phase 3's order ahead of the workers (at most 256 files and
  64 MiB past the claim counter) and posix_fadvise(WILLNEED)s each file, so that on a cold page
  cache many reads are queued at once instead of one per worker. It starts advising only when a
  preadv2(RWF_NOWAIT) probe finds data uncached, so warm scans pay ~2-5%; guest-cold, the whole
  process on a 433 MB root went from 0.775 s to 0.642 s (dpkg --verify 1.6 s). Its errors are
  ignored: it is a hint, and the worker's own open reports the real error.
* Errors are data: each request carries its status and errno back; only ENOMEM of the caller's
  own allocations raises.
* Digest.CONTENT (the content checks' literal markers, ac.h's Aho-Corasick DFA): the matcher is
  fed from the very buffer the digests are updated from, its state carried from read to read,
  so each file is still read once for every check. A CONTENT file never takes the MD5 lanes
  (its `want` is not MD5 alone). Files over content_limit (lstat size) are digested, not matched.
  When the caller captures patterns, files of <= window_file_limit bytes are read into a
  per-worker buffer (grown as needed, never past that limit) instead of the 128 KiB one, so the
  windows around captured hits can be cut from memory afterwards; a file that grew past the
  limit since lstat spills back into the 128 KiB buffer and gets hits but no windows. Hits go to
  a per-worker array grown on demand up to max_hits (a feed that overflowed it is replayed from
  the saved DFA state), then are copied into a per-file Content record.
* Digest.XXH3 (xxh3-128, xxHash's C code compiled in header-only from xxh_inline.h) is updated
  from the same buffer as the other digests, with a per-worker XXH3 state; the incremental
  rescans (scanner/state.py) compare it with the state file, so `--rescan content` reads every
  file but computes only this digest (~30 GB/s per core against MD5's 0.7). An MD5 + XXH3 file
  (a dpkg file scanned with --state) stays in the MD5 lanes: each lane has its own XXH3 state,
  updated from the lane's reads.
* MD5-only files (dpkg's case) go through a multi-buffer MD5 kernel (md5_multi.c) when the CPU
  has one: each worker keeps `lanes` files in flight, one per SIMD lane, each with its own
  LANE_BUFFER_SIZE buffer; a round compresses as many blocks in every lane as the emptiest busy
  lane holds, then lanes refill, pad at EOF, finalise and take the next file from the same
  queue. A file that also wants SHA1/SHA256 takes the one-pass OpenSSL path inline, so every
  file is still read once. Files of >= 1 MiB are claimed first, largest first, one at a time: a
  lane runs at 1/lanes of the kernel's rate, so a large file started last would finish alone.
  A worker's last busy lane finishes in plain C (one stream: ~650 MB/s vs ~350 in a lane).
  Dispatch is by CPUID at import (AVX-512F: 16 lanes, else AVX2: 8 lanes); elsewhere (aarch64,
  old x86) MD5 stays on OpenSSL. `_use_simd(False)` / `_md5_kernel(name)` switch for tests.
* extents=Extents (an image's placed files, scanner/targets/image.py): a representative whose
  lstat shows the extents' device, a listed inode and its length is read with pread from a
  duplicate of the extent's fd, bounded by that length (a source that ends early: ENODATA),
  instead of opening its own, sparse, file; the read-ahead thread skips it. Everything else
  about it (lanes, CONTENT, XXH3, hard links) is as for any file.

Multi-buffer MD5, same 2-vCPU EPYC (AVX-512, Zen 4 class), warm cache, the 8,702 dpkg-listed
files of bookworm-apps (433 MB; three of 32-33 MB), hash_files only, min of 5 (the VM was shared,
load 1-3 from other users, so +-30%):
  kernel (lanes)       per core, C loop  j1       j2       j4       j8
  OpenSSL (1)          775 MB/s          716 ms   375 ms   383 ms   380 ms
  avx2x8 (8)           3.5 GB/s          272 ms   172 ms   186 ms   206 ms
  avx2x16 (2x8)        4.6 GB/s          257 ms   202 ms   229 ms   230 ms
  avx512x16 (16)       5.7 GB/s          233 ms   178 ms   182 ms   209 ms
  avx512x32 (2x16)     5.8 GB/s          234 ms   178 ms   200 ms   203 ms
avx512x16 is the default (avx2x8 without AVX-512: the 2x8 AVX2 kernel has more throughput but a
slower lane, which is the critical path for the 33 MB files). Lane buffers of 32, 64 and 128 KiB
were within noise; 64 KiB is kept (16 lanes = 1 MiB per worker = L2). j2 ~ j4 < j8: with SIMD,
default_jobs() caps at 2 per CPU. Of ~180 ms at j2, ~40 ms is the lstat phase plus building
8,702 HashResults under the GIL, ~95 ms the critical path of the 33 MB cc1 in one lane.
Whole process (scan-root --all-files --checks 448, bench/whole_process.py, warm, loaded VM):
0.39-0.59 s against dpkg --verify 0.76-0.97 s; CPU 0.54-0.64 s with SIMD vs 0.96-1.0 s without.

Measured on a 2-vCPU AMD EPYC VM (SHA-NI), warm cache, the 116,844 regular files (5.6 GB) under
/usr: MD5 only ~750-1130 MB/s (15-23k files/s) against 420-500 MB/s for the hashlib thread pool
twin; MD5+SHA1+SHA256 in one pass ~450-750 MB/s against ~340-400. Read sizes of 64, 128 and
256 KiB were within this VM's run-to-run noise (+-30%); 128 KiB is kept (fits L2, few syscalls).
Default jobs is min(16, max(4, 4 * cpu_count)): on warm caches 2..16 threads were within noise
on 2 CPUs, and on cold caches or network storage more threads than CPUs overlap the reads.
"""

import os

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdlib cimport calloc

from _native._hash_lanes cimport lanes_setup, simd_active
from _native._hash_pool cimport Inode, Sized, big_first, group, run
from _native._hash_readahead cimport readahead_record, readahead_setup
from _native._hashjob cimport (
    ALL_FLAGS, CONTENT, MAX_WINDOWS, MD5, SHA1, SHA256, ST_OK, ST_SYMLINK, XXH3, Content, Job,
    Placed, Request,
)
from _native._matcher cimport Matcher
from _native.posix cimport free, ino_t, malloc, off_t

from _native._hash_lanes import (
    LANE_BUFFER_SIZE, _lane_buffer_size, _md5_kernel, _md5_kernels, _use_simd,
)
from _native._hash_open import _use_openat2
from _native._hash_readahead import (
    _readahead_hold, _readahead_probe, _readahead_stats, _readahead_window, _use_readahead,
)
from _native.hasher_py import default_jobs as _thread_pool_jobs
from _native.hashreq_py import MAX_WINDOWS as _MAX_WINDOWS_PY, content_options, validate_request
from _native.throttle import CpuBudget
from _native.types import Extents, FileKind, HashResult, HashStatus

__all__ = ["BUFFER_SIZE", "LANE_BUFFER_SIZE", "default_jobs", "hash_files"]

BUFFER_SIZE = 128 * 1024

cdef tuple _KINDS = (None,) + tuple(FileKind(n) for n in range(1, 9))
cdef tuple _STATUSES = tuple(HashStatus(n) for n in range(5))
if _MAX_WINDOWS_PY != MAX_WINDOWS:
    raise ImportError("_hashjob.pxd and hashreq_py disagree on MAX_WINDOWS")


cdef tuple _content(Content* content):
    """(scanned, hits, hit_total, windows) for HashResult."""
    cdef size_t i, at = 0
    cdef list windows = []
    if content == NULL or not content.scanned:
        return False, (), 0, ()
    hits = tuple([(content.hits[i].pattern, content.hits[i].start) for i in range(content.stored)])
    for i in range(<size_t>content.windows):
        windows.append((content.window_start[i], PyBytes_FromStringAndSize(
            <char*>content.window_data + at, content.window_length[i])))
        at += content.window_length[i]
    return True, hits, content.total, tuple(windows)


cdef object _result(Request* requests, size_t i, object path):
    cdef Request* request = &requests[i]
    cdef Request* source = request
    if request.kind == 0:
        return HashResult(path, _STATUSES[request.status], request.err)
    if request.rep >= 0:
        source = &requests[request.rep]
    ok = source.status == ST_OK
    scanned, hits, hit_total, windows = (
        _content(source.content) if ok and request.flags & CONTENT and request.rep >= 0
        else (False, (), 0, ())
    )
    return HashResult(
        path,
        _STATUSES[source.status],
        source.err,
        _KINDS[request.kind],
        request.mode,
        request.size,
        request.dev,
        request.ino,
        request.mtime_ns,
        request.ctime_ns,
        PyBytes_FromStringAndSize(<char*>source.md5, 16) if ok and request.flags & MD5 and request.rep >= 0 else None,
        PyBytes_FromStringAndSize(<char*>source.sha1, 20) if ok and request.flags & SHA1 and request.rep >= 0 else None,
        PyBytes_FromStringAndSize(<char*>source.sha256, 32) if ok and request.flags & SHA256 and request.rep >= 0 else None,
        PyBytes_FromStringAndSize(request.link, request.link_len) if request.status == ST_SYMLINK else None,
        PyBytes_FromStringAndSize(<char*>source.head, source.head_len) if ok and request.flags and request.rep >= 0 else None,
        scanned,
        hits,
        hit_total,
        windows,
        PyBytes_FromStringAndSize(<char*>source.xxh3, 16) if ok and request.flags & XXH3 and request.rep >= 0 else None,
    )


def default_jobs():
    """Worker threads when jobs=0: the twin's min(16, max(4, 4 * CPUs)), but at most 2 per CPU
    when a multi-buffer MD5 kernel is in use: each thread already has `lanes` files in flight,
    and more threads only fight over the cores (measurements in the module docstring)."""
    jobs = _thread_pool_jobs()
    if not simd_active():
        return jobs
    return min(jobs, 2 * len(os.sched_getaffinity(0)))


cdef inline bint _clean(bytes path, long flags):
    """True when `path` is relative and normalised and `flags` are known bits (validate_request's
    rule: no "", leading or trailing "/", "//", NUL, "." or ".." component)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path)
    cdef Py_ssize_t i, start = 0, length
    if flags < 0 or flags & ~ALL_FLAGS or n == 0 or p[0] == 47 or p[n - 1] == 47:
        return False
    for i in range(n + 1):
        if i == n or p[i] == 47:
            length = i - start
            if length == 0 or (p[start] == 46 and (length == 1 or (length == 2 and p[start + 1] == 46))):
                return False
            start = i + 1
        elif p[i] == 0:
            return False
    return True


def hash_files(int root_fd, requests, *, int jobs=0, matcher=None, capture=frozenset(),
               max_hits=64, window_before=256, window_after=65536, window_file_limit=8 << 20,
               content_limit=256 << 20, cpu_budget=None, extents=None):
    """One HashResult per (relative path, Digest flags) request, in request order.

    hash_files(root_fd: int, requests: Sequence[tuple[bytes, int]], *, jobs: int = 0,
               matcher: _native._matcher.Matcher | None = None, capture: Iterable[int] = (),
               max_hits: int = 64, window_before: int = 256, window_after: int = 65536,
               window_file_limit: int = 8 << 20, content_limit: int = 256 << 20,
               cpu_budget: _native.throttle.CpuBudget | None = None,
               extents: _native.types.Extents | None = None)
        -> list[HashResult]

    A hard-linked inode is read once, with the union of the digests its paths asked for; every
    file is read once whatever digests it needs, Digest.CONTENT (matching `matcher` over its
    bytes, see HashResult) included. jobs=0 picks default_jobs(). With `cpu_budget`
    (--max-cpu), workers sleep whenever the process is ahead of it. With `extents`, a regular
    file they place (device, inode, length) is read from its extent instead of its path.
    """
    cdef list keep = []
    cdef Placed* placed = NULL
    cdef Py_ssize_t count, i
    cdef Request* table = NULL
    cdef Inode* inodes = NULL
    cdef size_t* reps = NULL
    cdef Sized* scratch = NULL
    cdef unsigned char* captured = NULL
    cdef Job job
    cdef const char* slash
    cdef size_t length
    cdef int workers
    cdef int any_content = 0
    if jobs < 0:
        raise ValueError(f"jobs must be >= 0, not {jobs}")
    if cpu_budget is not None and not isinstance(cpu_budget, CpuBudget):
        raise TypeError(f"cpu_budget must be a CpuBudget, not {type(cpu_budget).__name__}")
    workers = jobs or default_jobs()
    for path, flags in requests:
        # The common case checked in C; anything doubtful goes to the shared Python rule, which
        # raises with the same message the twin gives.
        if not (type(path) is bytes and type(flags) is int and _clean(path, flags)):
            validate_request(path, flags)
        keep.append((path, int(flags)))
        any_content |= int(flags) & CONTENT
    # `options.matcher` (hence its automaton) stays referenced by this frame for the whole call.
    options = content_options(Matcher, bool(any_content), matcher, capture, max_hits,
                              window_before, window_after, window_file_limit, content_limit)
    count = len(keep)
    if count == 0:
        return []
    if extents is not None and not isinstance(extents, Extents):
        raise TypeError(f"extents must be an Extents, not {type(extents).__name__}")
    job.placed_count = 0
    job.placed_dev = 0
    if extents is not None and extents.by_inode:
        job.placed_dev = extents.dev
        # Converted (and checked) before any C memory is taken: nothing to free on an error.
        entries = [(<ino_t>ino, <int>fd, <off_t>offset, <off_t>length)
                   for ino, (fd, offset, length) in sorted(extents.by_inode.items())]
        placed = <Placed*>malloc(len(entries) * sizeof(Placed))
        if placed == NULL:
            raise MemoryError()
        for ino, fd, offset, length in entries:
            placed[job.placed_count].ino = ino
            placed[job.placed_count].fd = fd
            placed[job.placed_count].offset = offset
            placed[job.placed_count].length = length
            job.placed_count += 1
    job.placed = placed
    table = <Request*>calloc(count, sizeof(Request))
    inodes = <Inode*>malloc(count * sizeof(Inode))
    reps = <size_t*>malloc(count * sizeof(size_t))
    scratch = <Sized*>malloc(count * sizeof(Sized))
    try:
        if table == NULL or inodes == NULL or reps == NULL or scratch == NULL:
            raise MemoryError()
        job.automaton = NULL
        job.capture = NULL
        if options is not None:
            job.automaton = (<Matcher>options.matcher).c_automaton()
            if options.capture:
                captured = <unsigned char*>calloc(len(options.matcher.patterns), 1)
                if captured == NULL:
                    raise MemoryError()
                for index in options.capture:
                    captured[<size_t>index] = 1
                job.capture = captured
            # Python ints beyond the C types' range saturate: a limit no file can reach.
            job.max_hits = min(options.max_hits, 1 << 40)
            job.window_before = min(options.window_before, 1 << 62)
            job.window_after = min(options.window_after, 1 << 62)
            job.window_file_limit = min(options.window_file_limit, 1 << 62)
            job.content_limit = min(options.content_limit, 1 << 62)
        job.max_parent = 0
        for i in range(count):
            path = keep[i][0]
            table[i].path = PyBytes_AS_STRING(path)
            table[i].flags = keep[i][1]
            table[i].rep = -1
            length = PyBytes_GET_SIZE(path)
            while length > 0 and table[i].path[length - 1] != 47:  # b"/"
                length -= 1
            table[i].parent_len = length - 1 if length else 0
            if table[i].parent_len > job.max_parent:
                job.max_parent = table[i].parent_len
        job.requests = table
        job.count = count
        job.order = NULL
        job.root_fd = root_fd
        job.phase = 1
        lanes_setup(&job)
        job.big = 0
        readahead_setup(&job)
        job.max_cpu = 0
        if cpu_budget is not None:
            job.max_cpu = cpu_budget.fraction
            job.wall_start = cpu_budget.wall_start_ns
            job.cpu_start = cpu_budget.cpu_start_ns
        # GIL released for the whole batch: only syscalls, OpenSSL and the DFA run below, on C
        # structs whose path buffers are owned by `keep` and whose automaton is owned by
        # `options.matcher`; Python threads (the scan's producers) go on.
        with nogil:
            run(&job, workers)
            job.order = reps
            job.count = group(table, count, inodes, reps)
            job.phase = 3
            if job.kernel != NULL:
                job.big = big_first(table, reps, job.count, scratch)
            if job.count:
                run(&job, workers)
        readahead_record(&job)
        return [_result(table, i, keep[i][0]) for i in range(count)]
    finally:
        if table != NULL:
            for i in range(count):
                free(table[i].link)
                if table[i].content != NULL:
                    free(table[i].content.hits)
                    free(table[i].content.window_data)
                    free(table[i].content)
        free(captured)
        free(placed)
        free(table)
        free(inodes)
        free(reps)
        free(scratch)
