# cython: language_level=3
"""The native hasher's shared records: digest bits, statuses, one request, one batch (Job)."""

from libc.stdint cimport int64_t, uint64_t

from _native.ac cimport ac_automaton, ac_hit
from _native.md5_multi cimport md5mb_kernel
from _native.posix cimport (
    ENODATA, ENOENT, ENOTDIR, dev_t, ino_t, mode_t, nanosleep, off_t, pread, read, set_errno, ssize_t,
    timespec,
)
from _native.xxh cimport XXH3_state_t


cdef enum:
    # Digest bits (types.Digest).
    MD5 = 1
    SHA1 = 2
    SHA256 = 4
    CONTENT = 8
    XXH3 = 16
    ALL_FLAGS = 31

cdef enum:
    # HashStatus values.
    ST_OK = 0
    ST_MISSING = 1
    ST_SYMLINK = 2
    ST_NOT_REGULAR = 3
    ST_ERROR = 4

cdef enum:
    READ_BUFFER = 128 * 1024  # _hasher.BUFFER_SIZE: one read of the one-pass path
    CHUNK = 16  # indices claimed at a time: consecutive paths share a parent fd
    LANE_SLACK = 192  # a lane buffer also holds < 64 carried bytes and <= 72 bytes of padding
    BIG = 1024 * 1024  # MD5-lane batches start with files this large, largest first
    MAX_WINDOWS = 8  # hashreq_py.MAX_WINDOWS (_hasher checks they agree)
    FIRST_HITS = 64  # initial per-worker hit array; grown on demand up to max_hits
    # --max-cpu: a worker looks at the clocks after this much work (bytes read, plus FILE_COST
    # per file opened or lstat'ed): ~0.2-1.5 ms of CPU, so two clock reads (~1 us) cost < 1%.
    PACE_EVERY = 1024 * 1024
    FILE_COST = 8192


cdef struct Content:
    # Digest.CONTENT results of one representative (malloc'd; freed by hash_files).
    bint scanned
    ac_hit* hits          # `stored` hits, malloc'd
    size_t stored
    uint64_t total
    int windows
    uint64_t window_start[MAX_WINDOWS]
    size_t window_length[MAX_WINDOWS]
    unsigned char* window_data  # the windows' bytes, one after the other


cdef struct Span:
    uint64_t low
    uint64_t high


cdef struct Scratch:
    # Per-worker buffers of phase 3.
    unsigned char* buffer # READ_BUFFER bytes: every read unless a file is kept whole
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
    # Read-ahead (phase 3): start the prefetch thread, how far past the claim counter it may
    # run, the testing hold (>= 0: no window, the workers start hold_ns after it finished);
    # what it did (written by it, read after join)
    bint readahead
    bint probe
    size_t ahead_files
    uint64_t ahead_bytes
    long hold_ns
    bint unbounded
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


cdef struct Parent:
    # One cached parent directory fd per worker.
    char* path
    size_t length
    int fd
    bint valid


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
    #include <stdint.h>
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


cdef inline void fail(Request* request, int err) noexcept nogil:
    request.err = err
    request.status = ST_MISSING if err == ENOENT or err == ENOTDIR else ST_ERROR


cdef inline const char* base_name(Request* request) noexcept nogil:
    return request.path + request.parent_len + (1 if request.parent_len else 0)


cdef inline void pace(Job* job) noexcept nogil:
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


cdef inline void charge(Job* job, Scratch* scratch, size_t work) noexcept nogil:
    """Count `work` against this worker's debt; look at the clocks once it is PACE_EVERY."""
    if job.max_cpu <= 0:
        return
    scratch.debt += work
    if scratch.debt >= PACE_EVERY:
        scratch.debt = 0
        pace(job)


cdef inline ssize_t read_next(int fd, Request* request, unsigned char* data, size_t room,
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
