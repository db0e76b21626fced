# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Opening the hasher's files beneath the root: parents, lstat (phase 1), representatives."""

from libc.string cimport memcmp

from _native._hashjob cimport ST_NOT_REGULAR, ST_SYMLINK, Job, Parent, Placed, Request, base_name, fail
from _native.posix cimport (
    AT_SYMLINK_NOFOLLOW, EINTR, ENOMEM, EPERM, ESTALE, F_DUPFD_CLOEXEC, O_CLOEXEC, O_DIRECTORY,
    O_NOATIME, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_PATH, O_RDONLY, S_ISLNK, S_ISREG, close, errno,
    fcntl, file_kind, fstat, fstatat, memcpy, open_beneath, openat, readlinkat, realloc, ssize_t,
    struct_stat,
)
from libc.stdint cimport int64_t

# open_beneath's memo of whether the kernel has openat2 (-1: use the component-wise walk).
cdef int _openat2_state = 0


cdef int parent_fd(Job* job, Parent* parent, Request* request) noexcept nogil:
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


cdef void lstat_one(Job* job, Parent* parent, Request* request) noexcept nogil:
    cdef struct_stat st
    cdef int fd = parent_fd(job, parent, request)
    cdef const char* name = base_name(request)
    cdef size_t capacity = 256
    cdef ssize_t length
    cdef void* grown
    if fd < 0 or fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0:
        fail(request, errno)
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
                fail(request, ENOMEM)
                return
            request.link = <char*>grown
            length = readlinkat(fd, name, request.link, capacity)
            if length < 0:
                fail(request, errno)
                return
            if <size_t>length < capacity:  # not truncated
                request.link_len = length
                return
            capacity *= 2
    elif not S_ISREG(st.st_mode):
        request.status = ST_NOT_REGULAR


cdef int open_file(int dir_fd, const char* name) noexcept nogil:
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


cdef Placed* placed_extent(Job* job, Request* request) noexcept nogil:
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


cdef int open_rep(Job* job, Parent* parent, Request* request) noexcept nogil:
    """Open a representative for reading, still the file lstat saw; -1 with the failure recorded.
    A placed one gets its own descriptor of the extent's file (pread: no shared offset)."""
    cdef struct_stat st
    cdef Placed* placed = placed_extent(job, request)
    cdef int dir_fd, fd, err
    if placed != NULL:
        fd = fcntl(placed.fd, F_DUPFD_CLOEXEC, 0)
        if fd < 0:
            fail(request, errno)
            return -1
        request.placed = True
        request.base = placed.offset
        return fd
    dir_fd = parent_fd(job, parent, request)
    if dir_fd < 0:
        fail(request, errno)
        return -1
    fd = open_file(dir_fd, base_name(request))
    if fd < 0:
        fail(request, errno)
        return -1
    if fstat(fd, &st) != 0:
        err = errno
    elif st.st_dev != request.dev or st.st_ino != request.ino or not S_ISREG(st.st_mode):
        err = ESTALE  # replaced between lstat and open: not the file the caller was told about
    else:
        return fd
    close(fd)
    fail(request, err)
    return -1


def _use_openat2(bint enabled):
    """Testing hook: False forces the component-wise fallback used on kernels without openat2."""
    global _openat2_state
    _openat2_state = 0 if enabled else -1
