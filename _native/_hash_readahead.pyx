# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The hasher's read-ahead thread: posix_fadvise(WILLNEED) ahead of phase 3's workers."""

from libc.stdint cimport uint64_t

from _native._hash_open cimport open_file, parent_fd, placed_extent
from _native._hashjob cimport Job, Parent, Request, base_name, peek
from _native.posix cimport (
    POSIX_FADV_WILLNEED, RWF_NOWAIT, close, free, iovec, malloc, nanosleep, off_t,
    posix_fadvise, preadv2, timespec,
)

cdef enum:
    # How far ahead of the claim counter the prefetcher may run, the range one fadvise asks for
    # (the kernel caps one WILLNEED at the device's largest request, max(io_pages, ra_pages):
    # 1.25 MiB on virtio, >= 512 KiB on most disks), and when it decides the files are already
    # cached.
    _AHEAD_FILES = 256
    _ADVISE_STEP = 512 * 1024
    _PAUSE_NS = 200 * 1000  # sleep when the window is full
    _WARM_PAUSE_NS = 2 * 1000 * 1000  # ... and when sampling a warm cache: fewer wake-ups
    _WARM_STREAK = 32  # this many files in a row found cached: only sample from then on
    _WARM_SAMPLE = 32  # ... one file in this many, until a sampled file is not cached

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


cdef void readahead_setup(Job* job) noexcept:
    """This call's read-ahead settings, from the hooks below."""
    job.readahead = _readahead
    job.probe = _probe_cache
    job.ahead_files = _ahead_files
    job.ahead_bytes = _ahead_bytes
    job.hold_ns = _readahead_hold_ns


cdef void readahead_record(Job* job) noexcept:
    """Keep what this call's prefetcher did, for _readahead_stats()."""
    global _last_probed, _last_advised
    _last_probed, _last_advised = job.probed, job.advised


cdef int _prefetch(Job* job, Parent* parent, Request* request) noexcept nogil:
    """Queue the read of one representative: 1 found cached (nothing asked), 0 advised, -1 not
    opened. The open is the workers' own (parent beneath the root, the file O_NOFOLLOW)."""
    cdef int dir_fd
    cdef int fd
    cdef unsigned char byte
    cdef iovec vector
    cdef off_t offset = 0
    if placed_extent(job, request) != NULL:
        return 1  # read from its extent: its own (sparse) file has nothing to fetch
    dir_fd = parent_fd(job, parent, request)
    if dir_fd < 0:
        return -1
    fd = open_file(dir_fd, base_name(request))
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


cdef void* prefetcher(void* arg) noexcept nogil:
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
                if i - start >= job.ahead_files or sums[i] - sums[start] >= job.ahead_bytes:
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

