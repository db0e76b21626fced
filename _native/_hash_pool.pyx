# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The hasher's worker pool: each phase on threads, and phase 2's plan of what to read in which order."""

from libc.stdlib cimport qsort
from libc.string cimport memmove

from _native._hash_digest cimport hash_one
from _native._hash_lanes cimport md5_lanes
from _native._hash_open cimport lstat_one
from _native._hash_readahead cimport prefetcher
from _native._hashjob cimport (
    BIG, CHUNK, FILE_COST, READ_BUFFER, ST_OK, Job, Parent, Request, Scratch, charge, fail,
)
from _native.openssl cimport EVP_MD_CTX, EVP_MD_CTX_free, EVP_MD_CTX_new
from _native.posix cimport ENOMEM, close, free, malloc, nanosleep, ssize_t, timespec
from _native.threads cimport claim, pthread_create, pthread_join, pthread_t, run_on_threads
from _native.xxh cimport XXH3_createState, XXH3_freeState


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
        scratch.buffer = <unsigned char*>malloc(READ_BUFFER)
        contexts[0] = EVP_MD_CTX_new()
        contexts[1] = EVP_MD_CTX_new()
        contexts[2] = EVP_MD_CTX_new()
        scratch.xxh3 = XXH3_createState()
        ready = ready and scratch.xxh3 != NULL and scratch.buffer != NULL and contexts[0] != NULL and contexts[1] != NULL and contexts[2] != NULL
    if job.phase == 3 and job.kernel != NULL:
        md5_lanes(job, &parent, &scratch, contexts, ready)
    else:
        while True:
            start = claim(&job.next, CHUNK)
            if start >= job.count:
                break
            stop = start + CHUNK if start + CHUNK < job.count else job.count
            for k in range(start, stop):
                index = job.order[k] if job.order != NULL else k
                if not ready:
                    fail(&job.requests[index], ENOMEM)
                elif job.phase == 1:
                    lstat_one(job, &parent, &job.requests[index])
                else:
                    hash_one(job, &parent, &job.requests[index], &scratch, contexts)
                charge(job, &scratch, FILE_COST)
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



cdef void run(Job* job, int jobs) noexcept nogil:
    """Run `_worker` on up to `jobs` threads, the calling one included (and, in phase 3 with
    job.readahead, the prefetch thread beside them)."""
    cdef size_t chunks = (job.count + CHUNK - 1) // CHUNK
    cdef size_t wanted = <size_t>jobs if <size_t>jobs < chunks else chunks
    cdef pthread_t reader
    cdef bint reading = False
    cdef timespec hold
    job.next = 0
    job.probed = job.advised = 0
    job.unbounded = job.hold_ns >= 0
    if job.phase == 3 and job.readahead:
        # No prefetcher if it cannot start: it is only a hint.
        reading = pthread_create(&reader, NULL, prefetcher, job) == 0
        if reading and job.hold_ns >= 0:
            # Testing hook: the whole prefetch first, then a pause before any read.
            pthread_join(reader, NULL)
            reading = False
            hold.tv_sec = job.hold_ns // 1000000000
            hold.tv_nsec = job.hold_ns % 1000000000
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


cdef size_t group(Request* requests, size_t count, Inode* inodes, size_t* reps) noexcept nogil:
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



cdef int _by_size_descending(const void* a, const void* b) noexcept nogil:
    cdef const Sized* x = <const Sized*>a
    cdef const Sized* y = <const Sized*>b
    if x.size != y.size:
        return -1 if x.size > y.size else 1
    return -1 if x.index < y.index else (1 if x.index > y.index else 0)


cdef size_t big_first(Request* requests, size_t* reps, size_t count, Sized* scratch) noexcept nogil:
    """Move representatives of >= BIG bytes to the front, largest first; return how many.

    For the MD5 lanes: a lane hashes one file at 1/lanes of the kernel's rate, so the largest
    files must start first (longest job first) or they would finish alone, at the end.
    """
    cdef size_t big = 0, small = 0, i
    for i in range(count):
        if requests[reps[i]].size >= BIG:
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

