# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython multi-threaded hasher: pthreads + OpenSSL EVP, every digest of a file from one read.

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
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, qsort
from libc.string cimport memcmp, memmove
from posix.stdlib cimport posix_memalign

from _native.openssl cimport (
    EVP_DigestFinal_ex, EVP_DigestInit_ex, EVP_DigestUpdate, EVP_MD, EVP_MD_CTX, EVP_MD_CTX_free,
    EVP_MD_CTX_new, EVP_MD_fetch,
)
from _native.posix cimport (
    file_kind,
    AT_SYMLINK_NOFOLLOW, EINTR, ENOENT, ENOMEM, ENOTDIR, EPERM, ESTALE, O_CLOEXEC, O_DIRECTORY,
    O_NOATIME, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY, S_ISBLK, S_ISCHR, S_ISDIR,
    S_ISFIFO, S_ISLNK, S_ISREG, S_ISSOCK, close, dev_t, errno, free, fstat, fstatat, ino_t, malloc,
    memcpy, mode_t, off_t, open_beneath, openat, pread, read, readlinkat, realloc, ssize_t,
    struct_stat, F_DUPFD_CLOEXEC, fcntl, set_errno, ENODATA,
    POSIX_FADV_WILLNEED, RWF_NOWAIT, iovec, nanosleep, posix_fadvise, preadv2, timespec,
)
from _native.md5_multi cimport (
    MD5MB_KERNELS, MD5MB_MAX_LANES, MD5MB_NONE, md5mb_best, md5mb_digest, md5mb_get,
    md5mb_init_lane, md5mb_kernel, md5mb_lanes, md5mb_name, md5mb_pad, md5mb_scalar, md5mb_state,
)
from _native.threads cimport claim, pthread_create, pthread_join, pthread_t, run_on_threads
from _native.ac cimport ac_automaton, ac_feed, ac_hit
from _native.xxh cimport (
    XXH128_canonical_t, XXH128_canonicalFromHash, XXH3_128bits_digest, XXH3_128bits_reset,
    XXH3_128bits_update, XXH3_createState, XXH3_freeState, XXH3_state_t,
)
from _native._matcher cimport Matcher

from _native.hasher_py import (
    MAX_WINDOWS as _MAX_WINDOWS_PY, content_options, default_jobs as _thread_pool_jobs,
    validate_request,
)
from _native.throttle import CpuBudget
from _native.types import Extents, FileKind, HashResult, HashStatus

__all__ = ["BUFFER_SIZE", "LANE_BUFFER_SIZE", "default_jobs", "hash_files"]

BUFFER_SIZE = 128 * 1024
LANE_BUFFER_SIZE = 64 * 1024
cdef enum:
    _BUFFER = 128 * 1024
    _CHUNK = 16  # indices claimed at a time: consecutive paths share a parent fd
    _LANE_SLACK = 192  # a lane buffer also holds < 64 carried bytes and <= 72 bytes of padding
    _BIG = 1024 * 1024  # MD5-lane batches start with files this large, largest first
    _MAX_WINDOWS = 8  # hasher_py.MAX_WINDOWS
    _FIRST_HITS = 64  # initial per-worker hit array; grown on demand up to max_hits
    # Read-ahead (phase 3's prefetch thread, see _prefetcher): how far ahead of the claim counter
    # it may run, the range one fadvise asks for (the kernel caps one WILLNEED at the device's
    # largest request, max(io_pages, ra_pages): 1.25 MiB on virtio, >= 512 KiB on most disks),
    # and when it decides the files are already cached.
    _AHEAD_FILES = 256
    _ADVISE_STEP = 512 * 1024
    _PAUSE_NS = 200 * 1000  # sleep when the window is full
    _WARM_PAUSE_NS = 2 * 1000 * 1000  # ... and when sampling a warm cache: fewer wake-ups
    _WARM_STREAK = 32  # this many files in a row found cached: only sample from then on
    _WARM_SAMPLE = 32  # ... one file in this many, until a sampled file is not cached
    # --max-cpu: a worker looks at the clocks after this much work (bytes read, plus _FILE_COST
    # per file opened or lstat'ed): ~0.2-1.5 ms of CPU, so two clock reads (~1 us) cost < 1%.
    _PACE_EVERY = 1024 * 1024
    _FILE_COST = 8192

cdef extern from *:
    """
    static inline size_t scanroot_peek(size_t *next) {
        return __atomic_load_n(next, __ATOMIC_RELAXED);
    }
    """
    # A hint only (how far the queue is): claim() alone hands out the indices.
    size_t peek "scanroot_peek"(size_t* next) noexcept nogil

cdef extern from *:
    """
    #include <time.h>
    static inline int64_t scanroot_clock_ns(clockid_t id) {
        struct timespec now;
        clock_gettime(id, &now);
        return (int64_t)now.tv_sec * 1000000000 + now.tv_nsec;
    }
    """
    # --max-cpu (throttle.CpuBudget's arithmetic): the process's CPU time, all threads, and the
    # monotonic clock time.monotonic_ns() reads.
    int64_t clock_ns "scanroot_clock_ns"(int clock) noexcept nogil
    int CLOCK_MONOTONIC
    int CLOCK_PROCESS_CPUTIME_ID

cdef enum:
    MD5 = 1
    SHA1 = 2
    SHA256 = 4
    CONTENT = 8
    XXH3 = 16
    _ALL_FLAGS = 31

cdef enum:
    ST_OK = 0
    ST_MISSING = 1
    ST_SYMLINK = 2
    ST_NOT_REGULAR = 3
    ST_ERROR = 4

cdef tuple _KINDS = (None,) + tuple(FileKind(n) for n in range(1, 9))
cdef tuple _STATUSES = tuple(HashStatus(n) for n in range(5))
cdef int _openat2_state = 0
# Read-ahead in phase 3 (testing/benchmark hooks below): on/off, whether a cached file is
# detected and skipped, a test-only pause between a completed prefetch and the reads, and what
# the last call's prefetcher did (probed files, files advised).
cdef bint _readahead = True
cdef bint _probe_cache = True
cdef long _readahead_hold_ns = -1
cdef size_t _ahead_files = _AHEAD_FILES
cdef uint64_t _ahead_bytes = 64 * 1024 * 1024
cdef size_t _last_probed = 0
cdef size_t _last_advised = 0
# The multi-buffer MD5 kernel used for MD5-only reads (MD5MB_NONE: OpenSSL, one file at a time),
# and the bytes each lane reads at a time. Testing and benchmark hooks below change them.
cdef int _kernel_id = md5mb_best()
cdef size_t _lane_buffer = LANE_BUFFER_SIZE
cdef const EVP_MD* _md5 = EVP_MD_fetch(NULL, b"MD5", NULL)
cdef const EVP_MD* _sha1 = EVP_MD_fetch(NULL, b"SHA1", NULL)
cdef const EVP_MD* _sha256 = EVP_MD_fetch(NULL, b"SHA256", NULL)
if _md5 == NULL or _sha1 == NULL or _sha256 == NULL:
    raise ImportError("libcrypto has no MD5/SHA1/SHA256 (FIPS-only provider?)")
if _MAX_WINDOWS_PY != _MAX_WINDOWS:
    raise ImportError("_hasher and hasher_py disagree on MAX_WINDOWS")


cdef struct Content:
    # Digest.CONTENT results of one representative (malloc'd; freed by hash_files).
    bint scanned
    ac_hit* hits          # `stored` hits, malloc'd
    size_t stored
    uint64_t total
    int windows
    uint64_t window_start[_MAX_WINDOWS]
    size_t window_length[_MAX_WINDOWS]
    unsigned char* window_data  # the windows' bytes, one after the other


cdef struct Span:
    uint64_t low
    uint64_t high


cdef struct Scratch:
    # Per-worker buffers of phase 3.
    unsigned char* buffer # _BUFFER bytes: every read unless a file is kept whole
    unsigned char* whole  # CONTENT files <= window_file_limit with captures: the whole file
    size_t whole_size
    ac_hit* hits          # hits of the file being read
    size_t hits_size
    Span* spans           # hits_size spans: windows are computed here
    XXH3_state_t* xxh3    # Digest.XXH3 (64-byte aligned, from XXH3_createState)
    size_t debt           # --max-cpu: work since this worker last looked at the clocks


cdef struct Request:
    const char* path      # the caller's bytes buffer, kept alive by `keep` in hash_files
    size_t parent_len     # bytes before the last "/" (0: directly in the root)
    int flags             # digests this path asked for
    int want              # representative only: union over its hard links
    int status
    int err
    int kind              # FileKind value, 0 when lstat failed
    mode_t mode
    off_t size
    dev_t dev
    ino_t ino
    int64_t mtime_ns
    int64_t ctime_ns
    ssize_t rep           # index of the request whose read gives this one's digests, or -1
    char* link            # malloc'd symlink target
    size_t link_len
    unsigned char md5[16]
    unsigned char sha1[20]
    unsigned char sha256[32]
    unsigned char xxh3[16]
    unsigned char head[4]  # the first bytes read: enough to recognise an ELF header
    size_t head_len
    Content* content      # representative wanting CONTENT: its matcher results
    bint placed           # its bytes are read from an extent (hash_files(extents=...)): at base
    off_t base            # of a duplicate of the extent's fd, request.size of them


cdef struct Placed:
    # One entry of hash_files(extents=...), sorted by inode for a binary search.
    ino_t ino
    int fd
    off_t offset
    off_t length


cdef struct Inode:
    dev_t dev
    ino_t ino
    size_t index


cdef struct Job:
    Request* requests
    size_t* order         # indices to work on (phase 3), or NULL for 0..count-1 (phase 1)
    size_t count
    size_t next           # the work queue: claimed atomically
    size_t max_parent     # longest parent prefix, for the per-worker copy
    int root_fd
    int phase
    md5mb_kernel kernel   # phase 3: MD5-only files go through SIMD lanes, unless NULL
    int lanes
    size_t lane_buffer
    size_t big            # order[:big] are the large files, claimed one at a time
    # Digest.CONTENT (automaton NULL: no request wants it)
    const ac_automaton* automaton
    const unsigned char* capture  # per pattern: cut windows around its hits (NULL: none)
    size_t max_hits
    uint64_t window_before
    uint64_t window_after
    uint64_t window_file_limit
    uint64_t content_limit
    # Read-ahead (phase 3): start the prefetch thread; what it did (written by it, read after join)
    bint readahead
    bint probe
    bint unbounded        # testing (_readahead_hold): no window, the workers start afterwards
    size_t probed
    size_t advised
    # --max-cpu (max_cpu 0: off): CPU time / wall time since these starts stays <= max_cpu
    double max_cpu
    int64_t wall_start
    int64_t cpu_start
    # hash_files(extents=...): files of device placed_dev whose data lies in another file
    Placed* placed
    size_t placed_count
    dev_t placed_dev


cdef struct Lane:
    # One MD5 stream of a multi-buffer worker: the file a SIMD lane is hashing.
    Request* request      # NULL: idle
    int fd
    unsigned char* buffer # lane_buffer + _LANE_SLACK bytes
    size_t offset         # bytes of buffer already compressed (a multiple of 64)
    size_t length         # bytes in buffer; after EOF, padded to a multiple of 64
    uint64_t total        # file bytes read so far
    bint eof
    XXH3_state_t* xxh3    # the file wants Digest.XXH3 too: updated from each read (else NULL)


cdef struct Parent:
    # One cached parent directory fd per worker.
    char* path
    size_t length
    int fd
    bint valid


cdef void _pace(Job* job) noexcept nogil:
    """Sleep until the process is back within its CPU budget (throttle.CpuBudget.ahead_ns)."""
    cdef double used = <double>(clock_ns(CLOCK_PROCESS_CPUTIME_ID) - job.cpu_start)
    cdef double elapsed = <double>(clock_ns(CLOCK_MONOTONIC) - job.wall_start)
    cdef double ahead = used / job.max_cpu - elapsed
    cdef timespec pause
    if ahead <= 0:
        return
    pause.tv_sec = <long>(ahead / 1e9)
    pause.tv_nsec = <long>(ahead - <double>pause.tv_sec * 1e9)
    nanosleep(&pause, NULL)  # an EINTR wakes us early: the next check sleeps the rest


cdef inline void _charge(Job* job, Scratch* scratch, size_t work) noexcept nogil:
    """Count `work` against this worker's debt; look at the clocks once it is _PACE_EVERY."""
    if job.max_cpu <= 0:
        return
    scratch.debt += work
    if scratch.debt >= _PACE_EVERY:
        scratch.debt = 0
        _pace(job)


cdef inline void _fail(Request* request, int err) noexcept nogil:
    request.err = err
    request.status = ST_MISSING if err == ENOENT or err == ENOTDIR else ST_ERROR


cdef int _parent_fd(Job* job, Parent* parent, Request* request) noexcept nogil:
    """The fd of the request's parent directory (root_fd for top-level names); -1 and errno."""
    cdef size_t length = request.parent_len
    if length == 0:
        return job.root_fd
    if parent.valid and parent.length == length and memcmp(parent.path, request.path, length) == 0:
        return parent.fd
    if parent.valid:
        close(parent.fd)
        parent.valid = False
    memcpy(parent.path, request.path, length)
    parent.path[length] = 0
    parent.fd = open_beneath(job.root_fd, parent.path, O_PATH | O_DIRECTORY, &_openat2_state)
    if parent.fd < 0:
        return -1
    parent.length = length
    parent.valid = True
    return parent.fd


cdef inline const char* _name(Request* request) noexcept nogil:
    return request.path + request.parent_len + (1 if request.parent_len else 0)


cdef void _lstat_one(Job* job, Parent* parent, Request* request) noexcept nogil:
    cdef struct_stat st
    cdef int fd = _parent_fd(job, parent, request)
    cdef const char* name = _name(request)
    cdef size_t capacity = 256
    cdef ssize_t length
    cdef void* grown
    if fd < 0 or fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0:
        _fail(request, errno)
        return
    request.kind = file_kind(st.st_mode)
    request.mode = st.st_mode
    request.size = st.st_size
    request.dev = st.st_dev
    request.ino = st.st_ino
    request.mtime_ns = <int64_t>st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
    request.ctime_ns = <int64_t>st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec
    if S_ISLNK(st.st_mode):
        request.status = ST_SYMLINK
        while True:
            grown = realloc(request.link, capacity)
            if grown == NULL:
                _fail(request, ENOMEM)
                return
            request.link = <char*>grown
            length = readlinkat(fd, name, request.link, capacity)
            if length < 0:
                _fail(request, errno)
                return
            if <size_t>length < capacity:  # not truncated
                request.link_len = length
                return
            capacity *= 2
    elif not S_ISREG(st.st_mode):
        request.status = ST_NOT_REGULAR


cdef int _open_file(int dir_fd, const char* name) noexcept nogil:
    cdef int flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC
    cdef int fd
    while True:
        # O_NOATIME: reading must not change the scanned root; only the owner (or CAP_FOWNER)
        # may ask for it, so retry without on EPERM.
        fd = openat(dir_fd, name, flags | O_NOATIME)
        if fd < 0 and errno == EPERM:
            fd = openat(dir_fd, name, flags)
        if fd >= 0 or errno != EINTR:
            return fd


cdef int _match(Job* job, Scratch* scratch, uint32_t* state, const unsigned char* data,
                size_t count, uint64_t base, size_t* stored, uint64_t* total) noexcept nogil:
    """Feed one read to the DFA; 0 or ENOMEM. Hits go to scratch.hits, grown up to max_hits: a
    feed that filled it while hits were dropped is replayed from the saved state, larger."""
    cdef uint32_t saved_state = state[0]
    cdef size_t saved_stored = stored[0]
    cdef uint64_t saved_total = total[0]
    cdef size_t room, size
    cdef void* grown
    while True:
        room = scratch.hits_size if scratch.hits_size < job.max_hits else job.max_hits
        ac_feed(job.automaton, state, data, count, base, scratch.hits, room, stored, total)
        if room == job.max_hits or total[0] - saved_total == stored[0] - saved_stored:
            return 0
        size = scratch.hits_size * 2 if scratch.hits_size else _FIRST_HITS
        size = size if size < job.max_hits else job.max_hits
        grown = realloc(scratch.hits, size * sizeof(ac_hit))
        if grown == NULL:
            return ENOMEM
        scratch.hits = <ac_hit*>grown
        grown = realloc(scratch.spans, size * sizeof(Span))
        if grown == NULL:
            return ENOMEM
        scratch.spans = <Span*>grown
        scratch.hits_size = size
        state[0], stored[0], total[0] = saved_state, saved_stored, saved_total


cdef int _by_span(const void* a, const void* b) noexcept nogil:
    cdef const Span* x = <const Span*>a
    cdef const Span* y = <const Span*>b
    if x.low != y.low:
        return -1 if x.low < y.low else 1
    return -1 if x.high < y.high else (1 if x.high > y.high else 0)


cdef int _cut_windows(Job* job, Scratch* scratch, Content* content, uint64_t size) noexcept nogil:
    """Windows around the captured hits of a file held whole in scratch.whole; 0 or ENOMEM.
    Same rule as hasher_py.content_windows: spans sorted by offset, overlapping or adjacent ones
    merged, the first _MAX_WINDOWS kept."""
    cdef size_t count = 0, i, total = 0
    cdef int n = 0
    cdef uint64_t start
    cdef Span* spans = scratch.spans
    for i in range(content.stored):
        if job.capture[content.hits[i].pattern]:
            start = content.hits[i].start
            spans[count].low = start - job.window_before if start > job.window_before else 0
            spans[count].high = start + job.window_after if size - start > job.window_after else size
            count += 1
    if count == 0:
        return 0
    qsort(spans, count, sizeof(Span), _by_span)
    for i in range(count):
        if n and spans[i].low <= content.window_start[n - 1] + content.window_length[n - 1]:
            if spans[i].high > content.window_start[n - 1] + content.window_length[n - 1]:
                content.window_length[n - 1] = spans[i].high - content.window_start[n - 1]
        elif n == _MAX_WINDOWS:
            break  # sorted: every later span starts past the last window too
        else:
            content.window_start[n] = spans[i].low
            content.window_length[n] = spans[i].high - spans[i].low
            n += 1
    for i in range(<size_t>n):
        total += content.window_length[i]
    content.window_data = <unsigned char*>malloc(total + 1)
    if content.window_data == NULL:
        return ENOMEM
    total = 0
    for i in range(<size_t>n):
        memcpy(content.window_data + total, scratch.whole + content.window_start[i],
               content.window_length[i])
        total += content.window_length[i]
    content.windows = n
    return 0


cdef int _digest_fd(Job* job, int fd, Request* request, Scratch* scratch,
                    EVP_MD_CTX** contexts) noexcept nogil:
    """Read fd to EOF once, feeding every wanted digest (and the matcher, for CONTENT); 0 or an
    errno (EIO for an EVP failure, ENOMEM when a content buffer could not grow)."""
    cdef int want = request.want
    cdef ssize_t count
    cdef unsigned int size
    cdef bint ok = True
    cdef Content* content = request.content
    cdef bint scan = content != NULL and <uint64_t>request.size <= job.content_limit
    cdef bint whole = scan and job.capture != NULL and <uint64_t>request.size <= job.window_file_limit
    cdef uint64_t offset = 0
    cdef uint32_t state = 0
    cdef size_t stored = 0, room, grow
    cdef uint64_t total = 0
    cdef unsigned char* data
    cdef void* grown
    cdef int err
    if want & MD5:
        ok = ok and EVP_DigestInit_ex(contexts[0], _md5, NULL) == 1
    if want & SHA1:
        ok = ok and EVP_DigestInit_ex(contexts[1], _sha1, NULL) == 1
    if want & SHA256:
        ok = ok and EVP_DigestInit_ex(contexts[2], _sha256, NULL) == 1
    if want & XXH3:
        ok = ok and XXH3_128bits_reset(scratch.xxh3) == 0
    if not ok:
        return 5  # EIO
    if not scan and not want & (MD5 | SHA1 | SHA256 | XXH3):
        # Wanted only to be searched, and over content_limit: nothing to read it for (its
        # lstat size is enough to report it skipped).
        return 0
    while True:
        data = scratch.buffer
        room = _BUFFER
        if whole and offset < job.window_file_limit:
            # Kept whole: read into the whole-file buffer, grown (up to the limit) as needed.
            room = _BUFFER if job.window_file_limit - offset > _BUFFER else <size_t>(job.window_file_limit - offset)
            if offset + room > scratch.whole_size:
                grow = scratch.whole_size * 2
                if grow < offset + room:
                    grow = offset + room
                if grow < <size_t>request.size + _BUFFER:
                    grow = <size_t>request.size + _BUFFER  # the lstat size and a read to spare
                if grow > job.window_file_limit:
                    grow = job.window_file_limit
                grown = realloc(scratch.whole, grow)
                if grown == NULL:
                    return ENOMEM
                scratch.whole = <unsigned char*>grown
                scratch.whole_size = grow
            data = scratch.whole + offset
        count = _read_next(fd, request, data, room, offset)
        if count < 0:
            if errno == EINTR:
                continue
            return errno
        if count == 0:
            break
        _charge(job, scratch, <size_t>count)
        if whole and data == scratch.buffer:
            whole = False  # grew past window_file_limit since lstat: hits, but no windows
        if request.head_len == 0:
            request.head_len = 4 if count > 4 else <size_t>count
            memcpy(request.head, data, request.head_len)
        if want & MD5:
            ok = ok and EVP_DigestUpdate(contexts[0], data, count) == 1
        if want & SHA1:
            ok = ok and EVP_DigestUpdate(contexts[1], data, count) == 1
        if want & SHA256:
            ok = ok and EVP_DigestUpdate(contexts[2], data, count) == 1
        if want & XXH3:
            ok = ok and XXH3_128bits_update(scratch.xxh3, data, count) == 0
        if not ok:
            return 5
        if scan:
            err = _match(job, scratch, &state, data, count, offset, &stored, &total)
            if err:
                return err
        offset += count
    if want & MD5:
        ok = ok and EVP_DigestFinal_ex(contexts[0], request.md5, &size) == 1
    if want & SHA1:
        ok = ok and EVP_DigestFinal_ex(contexts[1], request.sha1, &size) == 1
    if want & SHA256:
        ok = ok and EVP_DigestFinal_ex(contexts[2], request.sha256, &size) == 1
    if want & XXH3:
        XXH128_canonicalFromHash(<XXH128_canonical_t*>request.xxh3, XXH3_128bits_digest(scratch.xxh3))
    if not ok:
        return 5
    if scan:
        content.hits = <ac_hit*>malloc(stored * sizeof(ac_hit) + 1)
        if content.hits == NULL:
            return ENOMEM
        if stored:
            memcpy(content.hits, scratch.hits, stored * sizeof(ac_hit))
        content.stored = stored
        content.total = total
        if whole:
            err = _cut_windows(job, scratch, content, offset)
            if err:
                return err
        content.scanned = True
    return 0


cdef Placed* _placed(Job* job, Request* request) noexcept nogil:
    """The extent holding this representative's bytes (same device, inode and length), or NULL."""
    cdef size_t low = 0, high = job.placed_count, middle
    if high == 0 or request.dev != job.placed_dev:
        return NULL
    while low < high:
        middle = (low + high) // 2
        if job.placed[middle].ino < request.ino:
            low = middle + 1
        else:
            high = middle
    if low < job.placed_count and job.placed[low].ino == request.ino:
        if job.placed[low].length == request.size:
            return &job.placed[low]
    return NULL


cdef inline ssize_t _read_next(int fd, Request* request, unsigned char* data, size_t room,
                               uint64_t done) noexcept nogil:
    """The next bytes of a representative, `done` already read: read() to EOF, or pread() within
    its extent when placed."""
    if not request.placed:
        return read(fd, data, room)
    if done >= <uint64_t>request.size:
        return 0
    if room > <uint64_t>request.size - done:
        room = <size_t>(<uint64_t>request.size - done)
    cdef ssize_t count = pread(fd, data, room, request.base + <off_t>done)
    if count == 0:
        set_errno(ENODATA)  # the extent's file ends early (a truncated archive): no digest
        return -1
    return count


cdef int _open_rep(Job* job, Parent* parent, Request* request) noexcept nogil:
    """Open a representative for reading, still the file lstat saw; -1 with the failure recorded.
    A placed one gets its own descriptor of the extent's file (pread: no shared offset)."""
    cdef struct_stat st
    cdef Placed* placed = _placed(job, request)
    cdef int dir_fd, fd, err
    if placed != NULL:
        fd = fcntl(placed.fd, F_DUPFD_CLOEXEC, 0)
        if fd < 0:
            _fail(request, errno)
            return -1
        request.placed = True
        request.base = placed.offset
        return fd
    dir_fd = _parent_fd(job, parent, request)
    if dir_fd < 0:
        _fail(request, errno)
        return -1
    fd = _open_file(dir_fd, _name(request))
    if fd < 0:
        _fail(request, errno)
        return -1
    if fstat(fd, &st) != 0:
        err = errno
    elif st.st_dev != request.dev or st.st_ino != request.ino or not S_ISREG(st.st_mode):
        err = ESTALE  # replaced between lstat and open: not the file the caller was told about
    else:
        return fd
    close(fd)
    _fail(request, err)
    return -1


cdef void _hash_one(Job* job, Parent* parent, Request* request, Scratch* scratch,
                    EVP_MD_CTX** contexts) noexcept nogil:
    cdef int fd
    cdef int err
    if request.want & CONTENT and job.automaton != NULL:
        request.content = <Content*>calloc(1, sizeof(Content))
        if request.content == NULL:
            _fail(request, ENOMEM)
            return
    fd = _open_rep(job, parent, request)
    if fd < 0:
        return
    err = _digest_fd(job, fd, request, scratch, contexts)
    close(fd)
    if err:
        _fail(request, err)


cdef int _fill(Lane* lane, size_t capacity) noexcept nogil:
    """Refill a lane whose buffer has < 64 bytes left: up to `capacity` more file bytes, or EOF.

    The < 64 uncompressed bytes move to the front, then reads go on until `capacity` bytes came
    in or read() says EOF; at EOF the MD5 padding goes after the data, so every byte left in the
    buffer is a whole block. 0 or an errno. The head is the start of the file's first read, as
    in _digest_fd.
    """
    cdef size_t carried = lane.length - lane.offset
    cdef size_t limit = carried + capacity
    cdef ssize_t count
    if carried:
        memmove(lane.buffer, lane.buffer + lane.offset, carried)
    lane.offset = 0
    lane.length = carried
    while lane.length < limit:
        count = _read_next(lane.fd, lane.request, lane.buffer + lane.length,
                           limit - lane.length, lane.total)
        if count < 0:
            if errno == EINTR:
                continue
            return errno
        if count == 0:
            lane.length = md5mb_pad(lane.buffer, lane.length, lane.total)
            lane.eof = True
            return 0
        if lane.total == 0:
            lane.request.head_len = 4 if count > 4 else <size_t>count
            memcpy(lane.request.head, lane.buffer + lane.length, lane.request.head_len)
        if lane.xxh3 != NULL and XXH3_128bits_update(lane.xxh3, lane.buffer + lane.length, count):
            return 5  # EIO, as an EVP failure
        lane.length += count
        lane.total += count
    return 0


cdef Request* _next_request(Job* job, size_t* k, size_t* stop) noexcept nogil:
    """The next representative of this worker's claimed run [k, stop), claiming more when empty."""
    cdef size_t start, step
    if k[0] >= stop[0]:
        # Large files one at a time, so that they spread over every thread's lanes.
        step = 1 if peek(&job.next) < job.big else _CHUNK
        start = claim(&job.next, step)
        if start >= job.count:
            return NULL
        k[0] = start
        stop[0] = start + step if start + step < job.count else job.count
    k[0] += 1
    return &job.requests[job.order[k[0] - 1]]


cdef void _md5_lanes(Job* job, Parent* parent, Scratch* scratch, EVP_MD_CTX** contexts,
                     bint ready) noexcept nogil:
    """Phase 3 with a multi-buffer MD5 kernel: job.lanes files hashed side by side.

    Each lane owns one MD5-only file at a time; a round compresses, in every lane, the number of
    whole blocks the emptiest busy lane holds, then lanes left with < 64 bytes refill (read on,
    or finalise and take the next file). Idle lanes point at a busy lane's blocks and their
    state is discarded. Files that want SHA1/SHA256 too take the one-pass OpenSSL path inline.
    Memory: lanes * (lane_buffer + _LANE_SLACK) bytes per worker.
    """
    cdef Lane lanes[MD5MB_MAX_LANES]
    cdef const uint8_t* blocks[MD5MB_MAX_LANES]
    cdef md5mb_state state
    cdef void* arena = NULL
    cdef size_t count = <size_t>job.lanes
    cdef size_t stride = job.lane_buffer + _LANE_SLACK
    cdef size_t k = 0, stop = 0, rounds = 0, available, l
    cdef int busy, first, err
    cdef bint exhausted = False
    cdef Request* request
    cdef Lane* lane
    cdef XXH3_state_t* xxh3_states[MD5MB_MAX_LANES]
    if ready and posix_memalign(&arena, 64, count * stride) != 0:
        arena = NULL
        ready = False
    for l in range(count):
        lanes[l].request = NULL
        lanes[l].buffer = <unsigned char*>arena + l * stride
        # Rescans want MD5 + XXH3 of dpkg's files: one XXH3 state per lane keeps them here.
        xxh3_states[l] = XXH3_createState() if ready else NULL
        ready = ready and xxh3_states[l] != NULL
    while True:
        busy = 0
        first = -1
        for l in range(count):
            lane = &lanes[l]
            while True:
                if lane.request == NULL:
                    if exhausted:
                        break
                    request = _next_request(job, &k, &stop)
                    if request == NULL:
                        exhausted = True
                        break
                    if not ready:
                        _fail(request, ENOMEM)
                    elif request.want & ~XXH3 != MD5:
                        _hash_one(job, parent, request, scratch, contexts)
                    else:
                        _charge(job, scratch, _FILE_COST)
                        lane.fd = _open_rep(job, parent, request)
                        if lane.fd >= 0:
                            lane.request = request
                            lane.offset = lane.length = 0
                            lane.total = 0
                            lane.eof = False
                            lane.xxh3 = xxh3_states[l] if request.want & XXH3 else NULL
                            if lane.xxh3 != NULL:
                                XXH3_128bits_reset(lane.xxh3)
                            md5mb_init_lane(&state, <int>l)
                    continue
                if lane.length - lane.offset >= 64:
                    break
                if lane.eof:
                    md5mb_digest(&state, <int>l, lane.request.md5)
                    if lane.xxh3 != NULL:
                        XXH128_canonicalFromHash(<XXH128_canonical_t*>lane.request.xxh3,
                                                 XXH3_128bits_digest(lane.xxh3))
                    close(lane.fd)
                    lane.request = NULL
                    continue
                err = _fill(lane, job.lane_buffer)
                _charge(job, scratch, job.lane_buffer)
                if err:
                    _fail(lane.request, err)
                    close(lane.fd)
                    lane.request = NULL
            if lane.request != NULL:
                available = (lane.length - lane.offset) >> 6
                if first < 0 or available < rounds:
                    rounds = available
                if first < 0:
                    first = <int>l
                busy += 1
        if busy == 0:
            break
        if exhausted and busy == 1:
            # The last file of this worker: one stream, so plain C beats a SIMD kernel that
            # would spend every lane on it.
            lane = &lanes[first]
            available = (lane.length - lane.offset) >> 6
            md5mb_scalar(&state, first, lane.buffer + lane.offset, available)
            lane.offset += available << 6
            continue
        for l in range(count):
            lane = &lanes[l] if lanes[l].request != NULL else &lanes[first]
            blocks[l] = lane.buffer + lane.offset
        job.kernel(&state, blocks, rounds)
        for l in range(count):
            if lanes[l].request != NULL:
                lanes[l].offset += rounds << 6
    for l in range(count):
        XXH3_freeState(xxh3_states[l])  # NULL-safe
    free(arena)


cdef void* _worker(void* arg) noexcept nogil:
    """Claim CHUNK indices at a time until the queue is empty; every outcome goes into Request."""
    cdef Job* job = <Job*>arg
    cdef Parent parent
    cdef Scratch scratch
    cdef EVP_MD_CTX* contexts[3]
    cdef size_t start, stop, k, index
    cdef bint ready
    parent.valid = False
    parent.path = <char*>malloc(job.max_parent + 1)
    contexts[0] = contexts[1] = contexts[2] = NULL
    scratch.buffer = scratch.whole = NULL
    scratch.hits = NULL
    scratch.spans = NULL
    scratch.xxh3 = NULL
    scratch.whole_size = scratch.hits_size = 0
    scratch.debt = 0
    ready = parent.path != NULL
    if job.phase == 3:
        scratch.buffer = <unsigned char*>malloc(_BUFFER)
        contexts[0] = EVP_MD_CTX_new()
        contexts[1] = EVP_MD_CTX_new()
        contexts[2] = EVP_MD_CTX_new()
        scratch.xxh3 = XXH3_createState()
        ready = ready and scratch.xxh3 != NULL and scratch.buffer != NULL and contexts[0] != NULL and contexts[1] != NULL and contexts[2] != NULL
    if job.phase == 3 and job.kernel != NULL:
        _md5_lanes(job, &parent, &scratch, contexts, ready)
    else:
        while True:
            start = claim(&job.next, _CHUNK)
            if start >= job.count:
                break
            stop = start + _CHUNK if start + _CHUNK < job.count else job.count
            for k in range(start, stop):
                index = job.order[k] if job.order != NULL else k
                if not ready:
                    _fail(&job.requests[index], ENOMEM)
                elif job.phase == 1:
                    _lstat_one(job, &parent, &job.requests[index])
                else:
                    _hash_one(job, &parent, &job.requests[index], &scratch, contexts)
                _charge(job, &scratch, _FILE_COST)
    if parent.valid:
        close(parent.fd)
    free(parent.path)
    free(scratch.buffer)
    free(scratch.whole)
    free(scratch.hits)
    free(scratch.spans)
    XXH3_freeState(scratch.xxh3)
    EVP_MD_CTX_free(contexts[0])
    EVP_MD_CTX_free(contexts[1])
    EVP_MD_CTX_free(contexts[2])
    return NULL


cdef int _prefetch(Job* job, Parent* parent, Request* request) noexcept nogil:
    """Queue the read of one representative: 1 found cached (nothing asked), 0 advised, -1 not
    opened. The open is the workers' own (parent beneath the root, the file O_NOFOLLOW)."""
    cdef int dir_fd
    cdef int fd
    cdef unsigned char byte
    cdef iovec vector
    cdef off_t offset = 0
    if _placed(job, request) != NULL:
        return 1  # read from its extent: its own (sparse) file has nothing to fetch
    dir_fd = _parent_fd(job, parent, request)
    if dir_fd < 0:
        return -1
    fd = _open_file(dir_fd, _name(request))
    if fd < 0:
        return -1
    if job.probe:
        # RWF_NOWAIT: fails (EAGAIN) rather than wait for the disk. Its first byte cached is
        # taken as the file cached; any other failure (an old kernel's EOPNOTSUPP) as not.
        vector.iov_base = &byte
        vector.iov_len = 1
        job.probed += 1
        if preadv2(fd, &vector, 1, 0, RWF_NOWAIT) == 1:
            close(fd)
            return 1
    # WILLNEED queues the reads and returns; one call covers at most the device's largest
    # request, so a large file takes one call per _ADVISE_STEP.
    while True:
        posix_fadvise(fd, offset, _ADVISE_STEP, POSIX_FADV_WILLNEED)
        offset += _ADVISE_STEP
        if offset >= request.size:
            break
    close(fd)
    job.advised += 1
    return 0


cdef void* _prefetcher(void* arg) noexcept nogil:
    """Phase 3's read-ahead thread: ask the kernel for the files the workers will read next.

    Workers read synchronously, one read in flight each (a SIMD worker's 16 lanes included), so a
    cold cache leaves the disk with `jobs` requests while it wants tens. This thread walks
    job.order, the order the workers claim in, and posix_fadvise(WILLNEED)s each representative
    (asynchronous: the kernel queues the reads), staying at most _AHEAD_FILES files and
    _AHEAD_BYTES bytes past the claim counter and skipping what has been claimed already. The
    large files the MD5 lanes take first (order[:big]) are advised whole even once claimed: a
    lane reads its file slowly, 64 KiB at a time, for the whole scan. When _WARM_STREAK files in a
    row are found cached (warm scan) only one file in _WARM_SAMPLE is probed, until one is not.

    A hint only: it writes no Request, and every failure (open, fadvise) is ignored by design:
    the worker opens the file again, checks it is still the inode lstat saw, and reports the
    real error. A file removed or replaced after its prefetch gives MISSING or ESTALE as ever.
    """
    cdef Job* job = <Job*>arg
    cdef Parent parent
    cdef timespec pause
    cdef uint64_t* sums  # sums[k]: bytes of order[:k], for the byte window
    cdef size_t i = 0, claimed, start, k, streak = 0, skipped = 0
    cdef Request* request
    cdef int found
    pause.tv_sec = 0
    pause.tv_nsec = _PAUSE_NS
    parent.valid = False
    parent.path = <char*>malloc(job.max_parent + 1)
    sums = <uint64_t*>malloc((job.count + 1) * sizeof(uint64_t))
    if parent.path != NULL and sums != NULL:
        sums[0] = 0
        for k in range(job.count):
            sums[k + 1] = sums[k] + <uint64_t>job.requests[job.order[k]].size
        while i < job.count:
            claimed = peek(&job.next)
            if claimed >= job.count:
                break  # every file is being read or done
            if i >= job.big and not job.unbounded:
                if i < claimed:
                    i = claimed  # the workers got there first
                start = claimed if claimed > job.big else job.big
                if i - start >= _ahead_files or sums[i] - sums[start] >= _ahead_bytes:
                    pause.tv_nsec = _WARM_PAUSE_NS if streak >= _WARM_STREAK else _PAUSE_NS
                    nanosleep(&pause, NULL)
                    continue
            request = &job.requests[job.order[i]]
            i += 1
            if request.size == 0:
                continue  # nothing to read, and says nothing about the cache
            if streak >= _WARM_STREAK:
                skipped += 1
                if skipped < _WARM_SAMPLE:
                    continue
                skipped = 0
            found = _prefetch(job, &parent, request)
            if found == 1:
                streak += 1
            elif found == 0:
                streak = 0
    if parent.valid:
        close(parent.fd)
    free(parent.path)
    free(sums)
    return NULL


cdef void _run(Job* job, int jobs) noexcept nogil:
    """Run `_worker` on up to `jobs` threads, the calling one included (and, in phase 3 with
    job.readahead, the prefetch thread beside them)."""
    cdef size_t chunks = (job.count + _CHUNK - 1) // _CHUNK
    cdef size_t wanted = <size_t>jobs if <size_t>jobs < chunks else chunks
    cdef pthread_t reader
    cdef bint reading = False
    cdef timespec hold
    job.next = 0
    job.probed = job.advised = 0
    job.unbounded = _readahead_hold_ns >= 0
    if job.phase == 3 and job.readahead:
        # No prefetcher if it cannot start: it is only a hint.
        reading = pthread_create(&reader, NULL, _prefetcher, job) == 0
        if reading and _readahead_hold_ns >= 0:
            # Testing hook: the whole prefetch first, then a pause before any read.
            pthread_join(reader, NULL)
            reading = False
            hold.tv_sec = _readahead_hold_ns // 1000000000
            hold.tv_nsec = _readahead_hold_ns % 1000000000
            nanosleep(&hold, NULL)
    run_on_threads(_worker, job, <int>wanted)
    if reading:
        pthread_join(reader, NULL)  # it stops once every index is claimed


cdef int _by_inode(const void* a, const void* b) noexcept nogil:
    cdef const Inode* x = <const Inode*>a
    cdef const Inode* y = <const Inode*>b
    if x.dev != y.dev:
        return -1 if x.dev < y.dev else 1
    if x.ino != y.ino:
        return -1 if x.ino < y.ino else 1
    return -1 if x.index < y.index else (1 if x.index > y.index else 0)


cdef int _by_index(const void* a, const void* b) noexcept nogil:
    cdef size_t x = (<const size_t*>a)[0]
    cdef size_t y = (<const size_t*>b)[0]
    return -1 if x < y else (1 if x > y else 0)


cdef size_t _group(Request* requests, size_t count, Inode* inodes, size_t* reps) noexcept nogil:
    """Point every regular file wanting a digest at its inode's first path; return #reps."""
    cdef size_t n = 0, found = 0, i
    cdef Request* request
    cdef Request* rep = NULL
    for i in range(count):
        request = &requests[i]
        if request.status == ST_OK and request.flags and request.kind == 1:
            inodes[n].dev = request.dev
            inodes[n].ino = request.ino
            inodes[n].index = i
            n += 1
    qsort(inodes, n, sizeof(Inode), _by_inode)
    for i in range(n):
        request = &requests[inodes[i].index]
        if rep == NULL or rep.dev != request.dev or rep.ino != request.ino:
            rep = request
            rep.want = 0
            reps[found] = inodes[i].index
            found += 1
        request.rep = <ssize_t>(rep - requests)
        rep.want |= request.flags
    # Read in request order: it follows the caller's (directory) order, good for parent reuse.
    qsort(reps, found, sizeof(size_t), _by_index)
    return found


cdef struct Sized:
    off_t size
    size_t index


cdef int _by_size_descending(const void* a, const void* b) noexcept nogil:
    cdef const Sized* x = <const Sized*>a
    cdef const Sized* y = <const Sized*>b
    if x.size != y.size:
        return -1 if x.size > y.size else 1
    return -1 if x.index < y.index else (1 if x.index > y.index else 0)


cdef size_t _big_first(Request* requests, size_t* reps, size_t count, Sized* scratch) noexcept nogil:
    """Move representatives of >= _BIG bytes to the front, largest first; return how many.

    For the MD5 lanes: a lane hashes one file at 1/lanes of the kernel's rate, so the largest
    files must start first (longest job first) or they would finish alone, at the end.
    """
    cdef size_t big = 0, small = 0, i
    for i in range(count):
        if requests[reps[i]].size >= _BIG:
            scratch[big].size = requests[reps[i]].size
            scratch[big].index = reps[i]
            big += 1
        else:
            reps[small] = reps[i]  # small <= i: compacts in place, order kept
            small += 1
    memmove(reps + big, reps, small * sizeof(size_t))
    qsort(scratch, big, sizeof(Sized), _by_size_descending)
    for i in range(big):
        reps[i] = scratch[i].index
    return big


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
    if _kernel_id == MD5MB_NONE:
        return jobs
    return min(jobs, 2 * len(os.sched_getaffinity(0)))


cdef inline bint _clean(bytes path, long flags):
    """True when `path` is relative and normalised and `flags` are known bits (validate_request's
    rule: no "", leading or trailing "/", "//", NUL, "." or ".." component)."""
    cdef const unsigned char* p = <const unsigned char*>PyBytes_AS_STRING(path)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(path)
    cdef Py_ssize_t i, start = 0, length
    if flags < 0 or flags & ~_ALL_FLAGS or n == 0 or p[0] == 47 or p[n - 1] == 47:
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
        job.kernel = md5mb_get(_kernel_id)
        job.lanes = md5mb_lanes(_kernel_id)
        job.lane_buffer = _lane_buffer
        job.big = 0
        job.readahead = _readahead
        job.probe = _probe_cache
        job.max_cpu = 0
        if cpu_budget is not None:
            job.max_cpu = cpu_budget.fraction
            job.wall_start = cpu_budget.wall_start_ns
            job.cpu_start = cpu_budget.cpu_start_ns
        # GIL released for the whole batch: only syscalls, OpenSSL and the DFA run below, on C
        # structs whose path buffers are owned by `keep` and whose automaton is owned by
        # `options.matcher`; Python threads (the scan's producers) go on.
        with nogil:
            _run(&job, workers)
            job.order = reps
            job.count = _group(table, count, inodes, reps)
            job.phase = 3
            if job.kernel != NULL:
                job.big = _big_first(table, reps, job.count, scratch)
            if job.count:
                _run(&job, workers)
        global _last_probed, _last_advised
        _last_probed, _last_advised = job.probed, job.advised
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


def _use_openat2(bint enabled):
    """Testing hook: False forces the component-wise fallback used on kernels without openat2."""
    global _openat2_state
    _openat2_state = 0 if enabled else -1


def _use_readahead(bint enabled):
    """Testing/benchmark hook: False runs phase 3 without the prefetch thread. Returns whether it
    was on before."""
    global _readahead
    previous = _readahead
    _readahead = enabled
    return previous


def _readahead_probe(bint enabled):
    """Testing hook: False advises every file, cached or not (no RWF_NOWAIT probe). Returns the
    previous setting."""
    global _probe_cache
    previous = _probe_cache
    _probe_cache = enabled
    return previous


def _readahead_hold(double seconds=-1.0):
    """Testing hook: >= 0 runs the prefetcher to completion, then waits `seconds` before phase 3's
    reads start (a window to change files between prefetch and read); < 0 turns it off."""
    global _readahead_hold_ns
    _readahead_hold_ns = <long>(seconds * 1e9) if seconds >= 0 else -1


def _readahead_window(size_t files=0, uint64_t size=0):
    """Benchmark hook: how far (files, bytes) the prefetcher may run past the claim counter; 0
    keeps a value. Returns the previous pair."""
    global _ahead_files, _ahead_bytes
    previous = _ahead_files, _ahead_bytes
    if files:
        _ahead_files = files
    if size:
        _ahead_bytes = size
    return previous


def _readahead_stats():
    """(files probed for the cache, files advised) by the last hash_files call's prefetcher."""
    return _last_probed, _last_advised


def _use_simd(bint enabled):
    """Testing hook: False hashes MD5-only files one at a time with OpenSSL, True with the best
    multi-buffer kernel this CPU runs (if any). Returns whether SIMD was in use before."""
    global _kernel_id
    previous = _kernel_id != MD5MB_NONE
    _kernel_id = md5mb_best() if enabled else MD5MB_NONE
    return previous


def _md5_kernel(name=None):
    """Benchmark/testing hook: the MD5-only kernel's name ("none" = OpenSSL, "avx2x8", "avx2x16",
    "avx512x16", "avx512x32"); with a name, switch to it (ValueError if this CPU cannot run it)
    and return the previous one."""
    global _kernel_id
    previous = md5mb_name(_kernel_id).decode()
    if name is not None:
        for id in range(MD5MB_KERNELS):
            if md5mb_name(id).decode() == name:
                if id != MD5MB_NONE and md5mb_lanes(id) == 0:
                    raise ValueError(f"this CPU or build cannot run the {name} MD5 kernel")
                _kernel_id = id
                break
        else:
            raise ValueError(f"unknown MD5 kernel {name!r}")
    return previous


def _md5_kernels():
    """Names of the multi-buffer MD5 kernels this CPU and build can run, best first is not implied."""
    return [md5mb_name(id).decode() for id in range(1, MD5MB_KERNELS) if md5mb_lanes(id)]


def _lane_buffer_size(size_t size=0):
    """Testing/benchmark hook: bytes a lane reads at a time (a multiple of 64, >= 64); 0 only
    asks. Returns the previous size."""
    global _lane_buffer
    previous = _lane_buffer
    if size:
        if size % 64:
            raise ValueError(f"lane buffer size must be a multiple of 64, not {size}")
        _lane_buffer = size
    return previous
