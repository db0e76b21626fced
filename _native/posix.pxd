# cython: language_level=3
"""POSIX/Linux declarations shared by the walker and the hasher, plus the beneath-the-root open."""

from libc.stdint cimport uint64_t


cdef extern from "<errno.h>" nogil:
    int errno
    enum:
        EINTR
        ENOENT
        ENOTDIR
        ENOMEM
        ENOSYS
        EPERM
        ELOOP
        ESTALE
        ENODATA
        EAGAIN


cdef extern from *:
    """
    #include <errno.h>
    static inline void scanroot_set_errno(int value) { errno = value; }
    """
    # Assigning `errno` from Cython would create a local variable; this writes the C one.
    void set_errno "scanroot_set_errno"(int value) noexcept nogil


cdef extern from "<sys/types.h>" nogil:
    ctypedef unsigned long dev_t
    ctypedef unsigned long ino_t
    ctypedef unsigned int mode_t
    ctypedef unsigned long nlink_t
    ctypedef long off_t
    ctypedef long ssize_t


cdef extern from "<time.h>" nogil:
    ctypedef long time_t
    cdef struct timespec:
        time_t tv_sec
        long tv_nsec
    int nanosleep(const timespec* request, timespec* remaining)


cdef extern from "<sys/stat.h>" nogil:
    cdef struct struct_stat "stat":
        dev_t st_dev
        ino_t st_ino
        mode_t st_mode
        nlink_t st_nlink
        off_t st_size
        timespec st_mtim
        timespec st_ctim
    int fstat(int fd, struct_stat* buf)
    int fstatat(int dirfd, const char* path, struct_stat* buf, int flags)
    bint S_ISREG(mode_t m)
    bint S_ISDIR(mode_t m)
    bint S_ISLNK(mode_t m)
    bint S_ISFIFO(mode_t m)
    bint S_ISSOCK(mode_t m)
    bint S_ISCHR(mode_t m)
    bint S_ISBLK(mode_t m)


cdef extern from *:
    """
    #include <errno.h>
    #include <stdint.h>
    #include <sys/syscall.h>
    #include <sys/sysmacros.h>
    #include <unistd.h>
    /* struct statx as the kernel lays it out (linux/stat.h; 256 bytes), declared here so that the
       build does not depend on the headers' age: stx_mnt_id is Linux >= 5.8. */
    struct scanroot_statx_time { int64_t tv_sec; uint32_t tv_nsec; int32_t reserved; };
    struct scanroot_statx {
        uint32_t stx_mask, stx_blksize;
        uint64_t stx_attributes;
        uint32_t stx_nlink, stx_uid, stx_gid;
        uint16_t stx_mode, stx_pad;
        uint64_t stx_ino, stx_size, stx_blocks, stx_attributes_mask;
        struct scanroot_statx_time stx_atime, stx_btime, stx_ctime, stx_mtime;
        uint32_t stx_rdev_major, stx_rdev_minor, stx_dev_major, stx_dev_minor;
        uint64_t stx_mnt_id;
        uint64_t stx_spare[13];
    };
    _Static_assert(sizeof(struct scanroot_statx) == 256, "struct statx is 256 bytes");
    enum {
        SCANROOT_STATX_BASIC_STATS = 0x7ff,
        SCANROOT_STATX_MNT_ID = 0x1000,
        SCANROOT_AT_NO_AUTOMOUNT = 0x800,
        SCANROOT_AT_EMPTY_PATH = 0x1000,
    };
    static inline int scanroot_statx(int dirfd, const char* path, int flags, unsigned int mask,
                                     struct scanroot_statx* out) {
    #ifdef SYS_statx
        return (int)syscall(SYS_statx, dirfd, path, flags, mask, out);
    #else
        errno = ENOSYS;
        return -1;
    #endif
    }
    static inline unsigned long scanroot_statx_dev(const struct scanroot_statx* st) {
        return makedev(st->stx_dev_major, st->stx_dev_minor);
    }
    """
    cdef struct statx_time "scanroot_statx_time":
        long long tv_sec
        unsigned int tv_nsec
    cdef struct struct_statx "scanroot_statx":
        unsigned int stx_mask
        unsigned int stx_nlink
        unsigned short stx_mode
        unsigned long long stx_ino
        unsigned long long stx_size
        statx_time stx_ctime
        statx_time stx_mtime
        unsigned long long stx_mnt_id
    enum:
        STATX_BASIC_STATS "SCANROOT_STATX_BASIC_STATS"
        STATX_MNT_ID "SCANROOT_STATX_MNT_ID"
        AT_NO_AUTOMOUNT "SCANROOT_AT_NO_AUTOMOUNT"
        AT_EMPTY_PATH "SCANROOT_AT_EMPTY_PATH"
    # statx(2) by its syscall (glibc's wrapper emulates it with fstatat where the kernel lacks
    # it, and then says nothing of the mount); -1 with errno on failure, ENOSYS without it.
    int statx "scanroot_statx"(int dirfd, const char* path, int flags, unsigned int mask,
                               struct_statx* out) noexcept nogil
    unsigned long statx_dev "scanroot_statx_dev"(const struct_statx* st) noexcept nogil


cdef extern from "<fcntl.h>" nogil:
    enum:
        O_RDONLY
        O_DIRECTORY
        O_NOFOLLOW
        O_CLOEXEC
        O_NONBLOCK
        O_NOCTTY
        O_NOATIME
        O_PATH
        AT_SYMLINK_NOFOLLOW
        POSIX_FADV_WILLNEED
        POSIX_FADV_DONTNEED
        F_DUPFD_CLOEXEC
    int openat(int dirfd, const char* path, int flags, ...)
    int fcntl(int fd, int command, ...)
    int posix_fadvise(int fd, off_t offset, off_t length, int advice)


cdef extern from "<sys/uio.h>" nogil:
    # preadv2 and RWF_NOWAIT (glibc >= 2.26, Linux >= 4.14; Python.h defines _GNU_SOURCE): a
    # buffered read that fails with EAGAIN instead of waiting for the disk, i.e. "is it cached?".
    cdef struct iovec:
        void* iov_base
        size_t iov_len
    enum:
        RWF_NOWAIT
    ssize_t preadv2(int fd, const iovec* iov, int count, off_t offset, int flags)


cdef extern from "<unistd.h>" nogil:
    int close(int fd)
    ssize_t read(int fd, void* buf, size_t count)
    ssize_t pread(int fd, void* buf, size_t count, off_t offset)
    ssize_t readlinkat(int dirfd, const char* path, char* buf, size_t size)
    long syscall(long number, ...)


cdef extern from "<dirent.h>" nogil:
    ctypedef struct DIR
    cdef struct dirent:
        char d_name[256]
    DIR* fdopendir(int fd)
    dirent* readdir(DIR* dirp)
    int closedir(DIR* dirp)
    int dirfd(DIR* dirp)


cdef extern from "<sys/syscall.h>" nogil:
    long SYS_openat2


cdef extern from "<linux/openat2.h>" nogil:
    cdef struct open_how:
        uint64_t flags
        uint64_t mode
        uint64_t resolve
    enum:
        RESOLVE_BENEATH
        RESOLVE_NO_SYMLINKS
        RESOLVE_NO_MAGICLINKS


cdef extern from "<string.h>" nogil:
    void* memset(void* s, int c, size_t n)
    void* memcpy(void* dest, const void* src, size_t n)
    size_t strlen(const char* s)
    char* strchr(const char* s, int c)
    int strcmp(const char* a, const char* b)


cdef extern from "<stdlib.h>" nogil:
    void* malloc(size_t size)
    void* realloc(void* ptr, size_t size)
    void free(void* ptr)


cdef inline int file_kind(mode_t mode) noexcept nogil:
    """The FileKind value (1 regular ... 8 other) of an st_mode; FileKind in types.py is the key."""
    if S_ISREG(mode):
        return 1
    if S_ISDIR(mode):
        return 2
    if S_ISLNK(mode):
        return 3
    if S_ISFIFO(mode):
        return 4
    if S_ISSOCK(mode):
        return 5
    if S_ISCHR(mode):
        return 6
    if S_ISBLK(mode):
        return 7
    return 8


cdef inline int _open_nointr(int dirfd, const char* path, int flags) noexcept nogil:
    cdef int fd
    while True:
        fd = openat(dirfd, path, flags)
        if fd >= 0 or errno != EINTR:
            return fd


cdef inline int _symlink_is_why(int dirfd, const char* name, int flags) noexcept nogil:
    # O_DIRECTORY|O_NOFOLLOW on a symlink fails with ENOTDIR; openat2's RESOLVE_NO_SYMLINKS says
    # ELOOP. Report ELOOP in both cases so the two open paths (and the Python twin) agree.
    cdef struct_stat st
    cdef int err = errno
    if err == ENOTDIR and (flags & O_DIRECTORY) and fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0:
        if S_ISLNK(st.st_mode):
            return ELOOP
    return err


cdef inline int open_components(int root_fd, const char* path, int flags) noexcept nogil:
    """openat one component at a time, none followed if a symlink: the portable open_beneath."""
    cdef size_t n = strlen(path)
    cdef char* copy = <char*>malloc(n + 1)
    cdef char* start = copy
    cdef char* slash
    cdef int cur = root_fd
    cdef int fd, saved, step_flags
    if copy == NULL:
        set_errno(ENOMEM)
        return -1
    memcpy(copy, path, n + 1)
    while True:
        slash = strchr(start, 47)  # b"/"
        if slash != NULL:
            slash[0] = 0
            step_flags = O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC
        else:
            step_flags = flags | O_NOFOLLOW | O_CLOEXEC
        fd = _open_nointr(cur, start, step_flags)
        saved = 0 if fd >= 0 else _symlink_is_why(cur, start, step_flags)
        if cur != root_fd:
            close(cur)
        if fd < 0:
            free(copy)
            set_errno(saved)
            return -1
        if slash == NULL:
            free(copy)
            return fd
        cur = fd
        start = slash + 1


cdef inline int open_beneath(int root_fd, const char* path, int flags, int* openat2_state) noexcept nogil:
    """Open `path` below root_fd without following any symlink in any component.

    openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS) when the kernel has it: one syscall, and a
    directory swapped for a symlink mid-scan gives ELOOP (or EXDEV) instead of leading outside the
    root. Otherwise open_components(), same results on a tree that is not changing underneath.
    `openat2_state` is the caller's module-wide flag (0 unknown, 1 usable, -1 absent): ENOSYS, or
    EPERM from a seccomp filter that does not know the syscall (no legitimate O_PATH/O_DIRECTORY
    open fails with EPERM), switches to open_components for the rest of the process. Threads may
    race on the flag; they can only store the same value, so no atomics are needed.
    """
    cdef open_how how
    cdef long fd
    if openat2_state[0] >= 0:
        memset(&how, 0, sizeof(how))
        # No O_NOFOLLOW here: RESOLVE_NO_SYMLINKS already refuses a symlink as the last
        # component, with ELOOP; O_NOFOLLOW|O_DIRECTORY would turn that into ENOTDIR.
        how.flags = <uint64_t>(flags | O_CLOEXEC)
        how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
        while True:
            fd = syscall(SYS_openat2, root_fd, path, &how, sizeof(how))
            if fd >= 0 or errno != EINTR:
                break
        if fd >= 0:
            openat2_state[0] = 1
            return <int>fd
        if (errno != ENOSYS and errno != EPERM) or openat2_state[0] == 1:
            return -1
        openat2_state[0] = -1
    return open_components(root_fd, path, flags)
