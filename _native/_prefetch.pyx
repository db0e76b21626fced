# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython early read-ahead: ask the page cache for the files package manifests list, before the scan parses them.

Why: on a cold page cache, check 448's time is the disk's. The hasher's own read-ahead thread
(_hasher.pyx) only starts once the manifests are parsed and planned, and `scan-root` spends its
first ~0.15 s importing itself and parsing: the disk idles. `start` runs one pthread that, in
parallel with all that, reads every `<directory>/*<suffix>` manifest below the root (dpkg's
`var/lib/dpkg/info/*.md5sums`: `<digest> <path>` lines) and posix_fadvise(WILLNEED)s the files
listed, up to `budget` bytes: the hasher's read-ahead takes over from there.

A hint only, so every failure is skipped and nothing it finds is reported:
* It never leaves the root and never follows a symlink: the manifest directory and each file's
  parent are opened with open_beneath (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or the
  component-wise O_NOFOLLOW walk), paths with "", "." or ".." components are skipped, and only
  what fstatat(AT_SYMLINK_NOFOLLOW) says is a regular file is opened (O_NONBLOCK|O_NOFOLLOW), so
  it cannot block on a FIFO or open a device. A path reached through a `bin -> usr/bin` link is
  skipped (the hasher's read-ahead gets it).
* Warm cache: the first byte of each file is probed with preadv2(RWF_NOWAIT); _WARM_STREAK
  listed files in a row found cached stop the thread, so a warm scan pays a few opens.
* Order: the manifests' own reads are queued first (one WILLNEED each: ~1,000 small cold reads
  side by side), then the listed files are lstat'ed and advised largest first from 1 MiB up, as
  the hasher claims them. Measured guest-cold on bookworm-apps, quiet, in-process A/B: 128 MiB
  (the 10 largest files) 0.646-0.688 s against 0.680-0.735 s without; 64 MiB and 256 MiB gained
  less, and advising every file (414 MB) lost (0.78-0.83 s): reads queued far ahead of the
  hasher's order delay the ones it waits for.
* Bounded: at most `budget` bytes advised (the page cache it fills must still hold them when
  the hasher reads them), manifests read up to _MANIFEST_LIMIT bytes each, one 16 MiB buffer.
"""

from libc.stdint cimport uint64_t
from libc.stdlib cimport qsort
from libc.string cimport memcmp

from _native.posix cimport (
    AT_SYMLINK_NOFOLLOW, EINTR, ENOMEM, O_CLOEXEC, O_DIRECTORY, O_NOCTTY, O_NOFOLLOW, O_NONBLOCK, O_PATH,
    O_RDONLY, POSIX_FADV_WILLNEED, RWF_NOWAIT, S_ISREG, DIR, close, closedir, dirent, dirfd, errno,
    fdopendir, free, fstat, fstatat, iovec, malloc, memcpy, off_t, open_beneath, openat,
    posix_fadvise, preadv2, read, readdir, realloc, ssize_t, strlen, struct_stat,
)
from _native.threads cimport pthread_create, pthread_join, pthread_t

__all__ = ["Prefetch", "start"]

cdef enum:
    _MANIFEST_LIMIT = 16 << 20  # bytes read of one manifest; the rest of a longer one is ignored
    _ADVISE_STEP = 512 * 1024  # one WILLNEED call per this many bytes (the hasher's step)
    _WARM_STREAK = 32  # listed files in a row found cached: the cache is warm, stop
    _BIG = 1024 * 1024  # the hasher's: files this large are claimed first, largest first
    _PARENT_MAX = 4096  # PATH_MAX: a longer parent directory is skipped


cdef extern from "<dirent.h>" nogil:
    void rewinddir(DIR* dirp)


cdef extern from *:
    """
    static inline int scanroot_stopped(int *flag) { return __atomic_load_n(flag, __ATOMIC_RELAXED); }
    static inline void scanroot_stop(int *flag) { __atomic_store_n(flag, 1, __ATOMIC_RELAXED); }
    """
    int stopped "scanroot_stopped"(int* flag) noexcept nogil
    void request_stop "scanroot_stop"(int* flag) noexcept nogil


cdef struct Listed:
    size_t offset  # of the NUL-terminated path in State.paths
    off_t size  # lstat size; -1: not a regular file (or gone), never advised


cdef struct State:
    int root_fd  # owned: O_PATH|O_DIRECTORY of the root
    char* directory  # relative, NUL-terminated (owned copy)
    char* suffix
    size_t suffix_len
    uint64_t budget
    bint probe  # False: advise every listed file, cached or not (tests)
    bint checked  # the warm-cache check ran
    int stop  # set by Prefetch.stop; read atomically
    int openat2_state
    int parent_fd  # the parent directory of the last file, kept while paths share it
    char* parent  # its relative path ("" = the root)
    size_t parent_len
    char* paths  # every listed path, NUL-terminated, back to back
    size_t paths_len
    size_t paths_size
    Listed* listed
    size_t count
    size_t listed_size
    size_t files  # results, read after pthread_join
    uint64_t bytes
    size_t streak


cdef bint _clean(const char* path, size_t n) noexcept nogil:
    """A relative, normalised path: no "", ".", ".." component, no leading or trailing "/"."""
    cdef size_t i, start = 0, length
    if n == 0 or path[n - 1] == 47:
        return False
    for i in range(n + 1):
        if i == n or path[i] == 47:
            length = i - start
            if length == 0 or (path[start] == 46 and (length == 1 or (length == 2 and path[start + 1] == 46))):
                return False
            start = i + 1
        elif path[i] == 0:
            return False
    return True


cdef int _parent(State* s, char* path, size_t split) noexcept nogil:
    """An O_PATH fd of path[:split] below the root (split 0: the root), reused while unchanged."""
    cdef char saved
    if split >= _PARENT_MAX:
        return -1
    if s.parent_fd >= 0 and s.parent_len == split and memcmp(s.parent, path, split) == 0:
        return s.parent_fd
    if s.parent_fd >= 0 and s.parent_fd != s.root_fd:
        close(s.parent_fd)
    s.parent_fd = -1
    if split == 0:
        s.parent_fd = s.root_fd
    else:
        saved = path[split]
        path[split] = 0
        s.parent_fd = open_beneath(s.root_fd, path, O_PATH | O_DIRECTORY, &s.openat2_state)
        path[split] = saved
        if s.parent_fd < 0:
            return -1
    memcpy(s.parent, path, split)
    s.parent_len = split
    return s.parent_fd


cdef int _by_size_descending(const void* a, const void* b) noexcept nogil:
    cdef const Listed* x = <const Listed*>a
    cdef const Listed* y = <const Listed*>b
    if x.size != y.size:
        return -1 if x.size > y.size else 1
    return -1 if x.offset < y.offset else (1 if x.offset > y.offset else 0)


cdef int _split(const char* path, size_t n) noexcept nogil:
    """Length of path's parent directory part ("" = 0), i.e. the index of its last "/" or 0."""
    while n > 0 and path[n - 1] != 47:
        n -= 1
    return <int>(n - 1) if n else 0


cdef off_t _lstat_size(State* s, char* path) noexcept nogil:
    """The size of a regular, non-empty file at path below the root, else -1."""
    cdef size_t n = strlen(path)
    cdef int split = _split(path, n)
    cdef int parent = _parent(s, path, <size_t>split)
    cdef struct_stat st
    if parent < 0:
        return -1
    if fstatat(parent, path + (split + 1 if split else 0), &st, AT_SYMLINK_NOFOLLOW) != 0:
        return -1
    if not S_ISREG(st.st_mode) or st.st_size == 0:
        return -1
    return st.st_size


cdef bint _advise(State* s, char* path, off_t size) noexcept nogil:
    """Advise one listed regular file; True when the thread should stop (budget, warm cache)."""
    cdef size_t n = strlen(path)
    cdef int split = _split(path, n)
    cdef int parent = _parent(s, path, <size_t>split)
    cdef int fd
    cdef struct_stat st
    cdef unsigned char byte
    cdef iovec vector
    cdef off_t offset = 0
    if parent < 0:
        return False
    # O_NONBLOCK|O_NOFOLLOW, then fstat: lstat said regular, but it may have changed since;
    # a FIFO swapped in cannot block this open, and nothing but a regular file is read.
    fd = openat(parent, path + (split + 1 if split else 0), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
    if fd < 0:
        return False
    if fstat(fd, &st) != 0 or not S_ISREG(st.st_mode):
        close(fd)
        return False
    if s.probe:
        vector.iov_base = &byte
        vector.iov_len = 1
        if preadv2(fd, &vector, 1, 0, RWF_NOWAIT) == 1:
            close(fd)
            s.streak += 1
            return s.streak >= _WARM_STREAK
    s.streak = 0
    while offset < st.st_size:
        posix_fadvise(fd, offset, _ADVISE_STEP, POSIX_FADV_WILLNEED)
        offset += _ADVISE_STEP
    close(fd)
    s.files += 1
    s.bytes += <uint64_t>st.st_size
    return s.bytes >= s.budget


cdef int _collect(State* s, char* data, size_t length) noexcept nogil:
    """Append the clean path of every `<digest> <path>` line of one manifest to s.listed.

    data[length] must be writable. 0, or ENOMEM (the thread then stops: a hint gives up).
    """
    cdef size_t i = 0, end, start, need
    cdef void* grown
    data[length] = 10  # a final newline, so that every line ends alike
    while i < length:
        end = i
        while data[end] != 10:
            end += 1
        start = i
        while start < end and data[start] != 32 and data[start] != 9:
            start += 1  # the digest
        while start < end and (data[start] == 32 or data[start] == 9):
            start += 1
        while start < end and data[start] == 47:
            start += 1  # a leading "/" (some manifests write absolute paths)
        if start < end and _clean(data + start, end - start):
            need = s.paths_len + (end - start) + 1
            if need > s.paths_size:
                grown = realloc(s.paths, need * 2)
                if grown == NULL:
                    return ENOMEM
                s.paths = <char*>grown
                s.paths_size = need * 2
            if s.count == s.listed_size:
                grown = realloc(s.listed, (s.listed_size * 2 + 256) * sizeof(Listed))
                if grown == NULL:
                    return ENOMEM
                s.listed = <Listed*>grown
                s.listed_size = s.listed_size * 2 + 256
            memcpy(s.paths + s.paths_len, data + start, end - start)
            s.paths[s.paths_len + (end - start)] = 0
            s.listed[s.count].offset = s.paths_len
            s.listed[s.count].size = -1
            s.count += 1
            s.paths_len = need
        i = end + 1
    return 0


cdef size_t _read_all(int fd, char* buffer, size_t limit) noexcept nogil:
    cdef size_t total = 0
    cdef ssize_t count
    while total < limit:
        count = read(fd, buffer + total, limit - total)
        if count < 0 and errno == EINTR:
            continue
        if count <= 0:
            break
        total += <size_t>count
    return total


cdef bint _cached(State* s, char* path) noexcept nogil:
    """Whether the first byte of a listed regular file is in the page cache (RWF_NOWAIT probe)."""
    cdef size_t n = strlen(path)
    cdef int split = _split(path, n)
    cdef int parent = _parent(s, path, <size_t>split)
    cdef int fd
    cdef unsigned char byte
    cdef iovec vector
    cdef bint found
    if parent < 0:
        return False
    fd = openat(parent, path + (split + 1 if split else 0), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
    if fd < 0:
        return False
    vector.iov_base = &byte
    vector.iov_len = 1
    found = preadv2(fd, &vector, 1, 0, RWF_NOWAIT) == 1
    close(fd)
    return found


cdef bint _warm(State* s) noexcept nogil:
    """The first _WARM_STREAK regular files listed are all cached: a warm scan, nothing to do.

    Checked as soon as the first manifests give that many paths, so that a warm scan stops
    before reading every manifest (~20 ms of CPU on bookworm-apps)."""
    cdef size_t i, probed = 0
    cdef char* path
    for i in range(s.count):
        path = s.paths + s.listed[i].offset
        if _lstat_size(s, path) <= 0:
            continue
        if not _cached(s, path):
            return False
        probed += 1
        if probed == _WARM_STREAK:
            return True
    return False


cdef int _next_manifest(State* s, DIR* listing) noexcept nogil:
    """An fd of the next regular `*<suffix>` file of the listing, or -1 at its end."""
    cdef dirent* entry
    cdef size_t n
    cdef int fd
    cdef struct_stat st
    while not stopped(&s.stop):
        entry = readdir(listing)
        if entry == NULL:
            return -1
        n = strlen(entry.d_name)
        if n <= s.suffix_len or memcmp(entry.d_name + n - s.suffix_len, s.suffix, s.suffix_len) != 0:
            continue
        fd = openat(dirfd(listing), entry.d_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)
        if fd < 0:
            continue
        if fstat(fd, &st) == 0 and S_ISREG(st.st_mode):
            return fd
        close(fd)
    return -1


cdef bint _read_manifests(State* s) noexcept nogil:
    """Collect the paths every `<directory>/*<suffix>` manifest lists; False when none could be."""
    cdef int dir_fd, fd
    cdef DIR* listing
    cdef size_t length, streak = 0
    cdef unsigned char byte
    cdef iovec vector
    cdef char* buffer = <char*>malloc(_MANIFEST_LIMIT + 1)
    if buffer == NULL:
        return False
    dir_fd = open_beneath(s.root_fd, s.directory, O_RDONLY | O_DIRECTORY, &s.openat2_state)
    listing = fdopendir(dir_fd) if dir_fd >= 0 else NULL
    if listing == NULL:
        if dir_fd >= 0:
            close(dir_fd)
        free(buffer)
        return False
    # First pass: queue every manifest's read (WILLNEED), so that on a cold disk the ~1,000
    # small reads run side by side, not one after the other as the second pass reads them.
    # _WARM_STREAK manifests in a row found cached end it (a warm scan).
    vector.iov_base = &byte
    vector.iov_len = 1
    while streak < _WARM_STREAK:
        fd = _next_manifest(s, listing)
        if fd < 0:
            break
        if s.probe and preadv2(fd, &vector, 1, 0, RWF_NOWAIT) == 1:
            streak += 1
        else:
            streak = 0
            posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED)
        close(fd)
    rewinddir(listing)
    while True:
        fd = _next_manifest(s, listing)
        if fd < 0:
            break
        length = _read_all(fd, buffer, _MANIFEST_LIMIT)
        close(fd)
        if _collect(s, buffer, length) != 0:
            break
        if s.probe and not s.checked and s.count >= 2 * _WARM_STREAK:
            s.checked = True
            if _warm(s):
                s.count = 0
                break
    closedir(listing)
    free(buffer)
    return True


cdef void* _thread(void* arg) noexcept nogil:
    """Collect the listed paths, lstat them, then advise: files of >= _BIG bytes first, largest
    first (the order the hasher's MD5 lanes claim them in), then the others in manifest order."""
    cdef State* s = <State*>arg
    cdef size_t i, big = 0, small
    cdef off_t size
    cdef Listed* ordered
    if not _read_manifests(s) or s.count == 0:
        return NULL
    for i in range(s.count):
        if stopped(&s.stop):
            return NULL
        size = _lstat_size(s, s.paths + s.listed[i].offset)
        s.listed[i].size = size
        if size >= _BIG:
            big += 1
    ordered = <Listed*>malloc(s.count * sizeof(Listed))
    if ordered == NULL:
        return NULL
    small = big
    big = 0
    for i in range(s.count):
        if s.listed[i].size >= _BIG:
            ordered[big] = s.listed[i]
            big += 1
        elif s.listed[i].size > 0:
            ordered[small] = s.listed[i]
            small += 1
    qsort(ordered, big, sizeof(Listed), _by_size_descending)
    for i in range(small):
        if stopped(&s.stop) or _advise(s, s.paths + ordered[i].offset, ordered[i].size):
            break
    free(ordered)
    return NULL


cdef class Prefetch:
    """A running early read-ahead; `stop()` ends it and says what it advised."""

    cdef State* state
    cdef pthread_t thread
    cdef bint running

    def __cinit__(self):
        self.state = NULL
        self.running = False

    def stop(self):
        """Stop the thread (it finishes the file in hand) and return (files, bytes) advised.

        stop() -> tuple[int, int]
        """
        if self.state == NULL:
            return 0, 0
        if self.running:
            request_stop(&self.state.stop)
            with nogil:
                pthread_join(self.thread, NULL)
            self.running = False
        return self.state.files, self.state.bytes

    def wait(self):
        """Wait until the thread has advised all it would, then stop; (files, bytes) advised.

        wait() -> tuple[int, int]
        """
        if self.state != NULL and self.running:
            with nogil:
                pthread_join(self.thread, NULL)
            self.running = False
        return self.stop()

    def __dealloc__(self):
        if self.state == NULL:
            return
        if self.running:
            request_stop(&self.state.stop)
            with nogil:
                pthread_join(self.thread, NULL)
        if self.state.parent_fd >= 0 and self.state.parent_fd != self.state.root_fd:
            close(self.state.parent_fd)
        if self.state.root_fd >= 0:
            close(self.state.root_fd)
        free(self.state.directory)
        free(self.state.suffix)
        free(self.state.parent)
        free(self.state.paths)
        free(self.state.listed)
        free(self.state)


def start(bytes root, bytes directory, bytes suffix, *, budget=128 << 20, bint probe=True):
    """Start advising the files listed by `root/directory/*suffix`; a Prefetch to stop later.

    start(root: bytes, directory: bytes, suffix: bytes, *, budget: int = 128 << 20,
          probe: bool = True) -> Prefetch

    A root that cannot be opened, or a missing directory, gives a Prefetch that advised nothing.
    """
    cdef Prefetch handle = Prefetch()
    cdef State* s = <State*>malloc(sizeof(State))
    cdef size_t n
    if s == NULL:
        raise MemoryError()
    handle.state = s
    s.root_fd = -1
    s.parent_fd = -1
    s.directory = s.suffix = s.parent = s.paths = NULL
    s.listed = NULL
    s.files = s.streak = s.parent_len = s.paths_len = s.paths_size = s.count = s.listed_size = 0
    s.bytes = 0
    s.stop = 0
    s.openat2_state = 0
    s.budget = min(budget, 1 << 62) if budget > 0 else 0
    s.probe = probe
    s.checked = False
    n = len(directory)
    s.directory = <char*>malloc(n + 1)
    s.suffix = <char*>malloc(len(suffix) + 1)
    s.parent = <char*>malloc(_PARENT_MAX)
    if s.directory == NULL or s.suffix == NULL or s.parent == NULL:
        raise MemoryError()
    memcpy(s.directory, <const char*>directory, n + 1)
    memcpy(s.suffix, <const char*>suffix, len(suffix) + 1)
    s.suffix_len = len(suffix)
    if b"\0" in root or b"\0" in directory or b"\0" in suffix or not _clean(s.directory, n) or s.budget == 0:
        return handle
    s.root_fd = openat(-100, <const char*>root, O_PATH | O_DIRECTORY | O_CLOEXEC)  # AT_FDCWD
    if s.root_fd < 0:
        return handle
    handle.running = pthread_create(&handle.thread, NULL, _thread, s) == 0
    return handle
