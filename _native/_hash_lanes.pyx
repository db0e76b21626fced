# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Multi-buffer MD5 for the hasher: one MD5-only file per SIMD lane, and the kernel in use."""

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memmove
from posix.stdlib cimport posix_memalign

from _native._hash_digest cimport hash_one
from _native._hash_open cimport open_rep
from _native._hashjob cimport (
    CHUNK, FILE_COST, LANE_SLACK, MD5, XXH3, Job, Parent, Request, Scratch, charge, fail, peek,
    read_next,
)
from _native.md5_multi cimport (
    MD5MB_KERNELS, MD5MB_MAX_LANES, MD5MB_NONE, md5mb_best, md5mb_digest, md5mb_get,
    md5mb_init_lane, md5mb_lanes, md5mb_name, md5mb_pad, md5mb_scalar, md5mb_state,
)
from _native.openssl cimport EVP_MD_CTX
from _native.posix cimport EINTR, ENOMEM, close, errno, free, memcpy, ssize_t
from _native.threads cimport claim
from _native.xxh cimport (
    XXH128_canonical_t, XXH128_canonicalFromHash, XXH3_128bits_digest, XXH3_128bits_reset,
    XXH3_128bits_update, XXH3_createState, XXH3_freeState, XXH3_state_t,
)

LANE_BUFFER_SIZE = 64 * 1024

# The multi-buffer MD5 kernel used for MD5-only reads (MD5MB_NONE: OpenSSL, one file at a time),
# and the bytes each lane reads at a time. Testing and benchmark hooks below change them.
cdef int _kernel_id = md5mb_best()
cdef size_t _lane_buffer = LANE_BUFFER_SIZE


cdef struct Lane:
    # One MD5 stream of a multi-buffer worker: the file a SIMD lane is hashing.
    Request* request      # NULL: idle
    int fd
    unsigned char* buffer # lane_buffer + LANE_SLACK bytes
    size_t offset         # bytes of buffer already compressed (a multiple of 64)
    size_t length         # bytes in buffer; after EOF, padded to a multiple of 64
    uint64_t total        # file bytes read so far
    bint eof
    XXH3_state_t* xxh3    # the file wants Digest.XXH3 too: updated from each read (else NULL)


cdef void lanes_setup(Job* job) noexcept:
    """The kernel (NULL: none) and lane geometry this call's phase 3 uses."""
    job.kernel = md5mb_get(_kernel_id)
    job.lanes = md5mb_lanes(_kernel_id)
    job.lane_buffer = _lane_buffer


cdef bint simd_active() noexcept:
    return _kernel_id != MD5MB_NONE


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
        count = read_next(lane.fd, lane.request, lane.buffer + lane.length,
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
        step = 1 if peek(&job.next) < job.big else CHUNK
        start = claim(&job.next, step)
        if start >= job.count:
            return NULL
        k[0] = start
        stop[0] = start + step if start + step < job.count else job.count
    k[0] += 1
    return &job.requests[job.order[k[0] - 1]]


cdef void md5_lanes(Job* job, Parent* parent, Scratch* scratch, EVP_MD_CTX** contexts,
                    bint ready) noexcept nogil:
    """Phase 3 with a multi-buffer MD5 kernel: job.lanes files hashed side by side.

    Each lane owns one MD5-only file at a time; a round compresses, in every lane, the number of
    whole blocks the emptiest busy lane holds, then lanes left with < 64 bytes refill (read on,
    or finalise and take the next file). Idle lanes point at a busy lane's blocks and their
    state is discarded. Files that want SHA1/SHA256 too take the one-pass OpenSSL path inline.
    Memory: lanes * (lane_buffer + LANE_SLACK) bytes per worker.
    """
    cdef Lane lanes[MD5MB_MAX_LANES]
    cdef const uint8_t* blocks[MD5MB_MAX_LANES]
    cdef md5mb_state state
    cdef void* arena = NULL
    cdef size_t count = <size_t>job.lanes
    cdef size_t stride = job.lane_buffer + LANE_SLACK
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
                        fail(request, ENOMEM)
                    elif request.want & ~XXH3 != MD5:
                        hash_one(job, parent, request, scratch, contexts)
                    else:
                        charge(job, scratch, FILE_COST)
                        lane.fd = open_rep(job, parent, request)
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
                charge(job, scratch, job.lane_buffer)
                if err:
                    fail(lane.request, err)
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
