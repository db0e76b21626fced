# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Cython directory walker: one openat2 + getdents64 + statx pass per directory, GIL released.

Design (the pure-Python twin `walker_py` yields exactly the same sequence):

* Each directory is opened relative to the root fd with open_beneath() (openat2 with
  RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, or a component-wise O_NOFOLLOW walk on old kernels), so a
  directory swapped for a symlink mid-walk gives ELOOP instead of a walk outside the root.
* All names of a directory are read and statx(AT_SYMLINK_NOFOLLOW)'d into a C array with the GIL
  released (that loop is all syscalls), sorted with strcmp (bytewise, like Python's bytes order),
  and the directory is closed before any child is opened: open fds stay at three (the root's
  and one per reading thread) whatever the depth.
* When the walk enters a directory it also reads the next sibling directories it will enter
  (up to 64, whose st_size add up to 256 KiB), on two threads when the process may use two CPUs
  (cpus.cpu_limit: one under a quota of one CPU or less): those syscalls are ~80% of a walk's
  CPU. A sibling read ahead is listed as it was at that moment, a few ms early; the entries
  yielded and their order are the same.
* Python objects are built afterwards, with the GIL; the generator then keeps only the listings
  along the current path (a stack) and that bounded read-ahead, never the whole tree. Records
  are stored at WalkEntry's slot offsets (see _entry), ~6x faster than its frozen __init__.
* 1,000,000 files in 100,000 directories, 2-vCPU EPYC shared with other jobs: 3.7 s against
  2.1 s for `find -xdev | wc -l` (which stats no file), the twin 6.5 s (bench/scale.py).
* Only directories are ever opened, so FIFOs and devices cannot block the walk.
* Mount points: statx (in place of fstatat: no syscall more, no measurable cost) gives each entry's
  mount id (Linux >= 5.8); one that is not the root's is a mount point, a bind mount of the same
  file system included, which st_dev cannot tell. On older kernels (or with statx refused by a
  seccomp filter) entries are fstatat'd and /proc/self/mountinfo's mount points below the root,
  read once per walk, tell them (mounts.py), as the twin always does.
* walk(unchanged=...): a rescan's state maps paths to the identities it recorded; a regular file
  whose lstat matches is not built into a WalkEntry but appended to `matched`, as its record
  is made (in C, from the listing's raw fields). An unchanged root's stat rescan then yields only
  its directories and symlinks: 12.6k entries -> 2.4k on bookworm-apps.
"""

import dataclasses
import os
import types

from cpython.object cimport PyObject
from cpython.dict cimport PyDict_GetItem
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_GET_ITEM, PyTuple_GET_SIZE
from libc.stdint cimport int64_t, uint64_t
from libc.stdlib cimport calloc, qsort

from _native.posix cimport (
    file_kind, statx, statx_dev,
    AT_EMPTY_PATH, AT_NO_AUTOMOUNT, AT_SYMLINK_NOFOLLOW, DIR, EINTR, ENOMEM,
    O_DIRECTORY, O_RDONLY, S_ISBLK, S_ISCHR, S_ISDIR, S_ISFIFO, S_ISLNK, S_ISREG, S_ISSOCK,
    STATX_BASIC_STATS, STATX_MNT_ID, close, closedir, dev_t, dirent, dirfd, errno, fdopendir, free,
    fstatat, ino_t, malloc, memcpy, mode_t, nlink_t, off_t, open_beneath, readdir, realloc, set_errno,
    strcmp, strlen, struct_stat, struct_statx,
)

from _native.threads cimport claim, run_on_threads
from _native.types import FileKind, WalkEntry, WalkError
from _native import cpus, mounts

__all__ = ["walk"]

# FileKind by the small int file_kind() returns; a tuple index is cheaper than FileKind(n).
cdef tuple _KINDS = (None,) + tuple(FileKind(n) for n in range(1, 9))

# openat2 availability, probed on first use (see posix.open_beneath).
cdef int _openat2_state = 0
# statx with mount ids: 0 probed by each walk on its root, -1 never (the _use_statx hook).
cdef int _statx_state = 0

cdef extern from *:
    """
    #include <sys/syscall.h>
    #include <unistd.h>
    /* linux_dirent64, as getdents64(2) documents it. */
    struct scanroot_dirent64 {
        unsigned long long d_ino;
        long long d_off;
        unsigned short d_reclen;
        unsigned char d_type;
        char d_name[];
    };
    static inline long scanroot_getdents64(int fd, char *buffer, size_t size) {
        return syscall(SYS_getdents64, fd, buffer, size);
    }
    """
    struct scanroot_dirent64:
        unsigned short d_reclen
        char d_name[1]
    long getdents64 "scanroot_getdents64"(int fd, char* buffer, size_t size) noexcept nogil

cdef enum:
    _DENTS_BUFFER = 32 * 1024  # glibc's readdir buffer size: two calls for a 500-name directory
    # Sibling directories read side by side (walk): at most this many, whose directory sizes
    # (st_size: ~4 KiB per ~100 names on ext4) add up to at most _AHEAD_BYTES.
    _AHEAD_DIRS = 64
    _AHEAD_BYTES = 256 * 1024
    _THREADED_DIRS = 8  # a batch of fewer directories is read by the calling thread alone

cdef extern from "Python.h":
    ctypedef struct PyMemberDef:
        Py_ssize_t offset
    ctypedef struct PyMemberDescrObject:
        PyMemberDef* d_member
    object PyType_GenericAlloc(type cls, Py_ssize_t items)

# WalkEntry is a frozen slots dataclass: its __init__ sets each field through object.__setattr__,
# ~1.8 us an entry, as much as the walk's syscalls. Entries are built here instead by allocating
# the object and storing each field at its slot's offset (read from the slot's member descriptor
# at import, so a change to WalkEntry's fields fails loudly here rather than corrupting memory).
# The result is the same object WalkEntry(...) makes: same type, fields, equality and hash.
_FIELDS = (
    "path", "kind", "mode", "size", "dev", "ino", "nlink", "mtime_ns", "ctime_ns", "mount_point"
)
if tuple(field.name for field in dataclasses.fields(WalkEntry)) != _FIELDS:
    raise ImportError("_walker: WalkEntry's fields changed; update _FIELDS and _entry")
cdef type _ENTRY = WalkEntry
cdef Py_ssize_t _OFFSETS[10]
for _index, _name in enumerate(_FIELDS):
    _slot = WalkEntry.__dict__[_name]
    if not isinstance(_slot, types.MemberDescriptorType):
        raise ImportError(f"_walker: WalkEntry.{_name} is not a slot")
    _OFFSETS[_index] = (<PyMemberDescrObject*><PyObject*>_slot).d_member.offset




cdef struct RawEntry:
    size_t name_off
    const char* name
    int err
    mode_t mode
    off_t size
    dev_t dev
    ino_t ino
    nlink_t nlink
    int64_t mtime_ns
    int64_t ctime_ns
    bint mount_point


cdef struct Mounts:
    # How a listing tells mount points (walk): by statx's mount id, compared with `mnt_id`
    # (the root's) or, when `own`, with the listed directory's own; else not at all here
    # (mountinfo's paths are matched in _records).
    bint use_statx
    bint own
    uint64_t mnt_id


cdef struct Listing:
    char* names          # every name, NUL-terminated, back to back
    size_t names_len
    size_t names_cap
    RawEntry* entries
    size_t count
    size_t cap


cdef inline void _store(object record, Py_ssize_t offset, object value):
    Py_INCREF(value)
    (<PyObject**>((<char*><PyObject*>record) + offset))[0] = <PyObject*>value


cdef object _entry(bytes path, RawEntry* raw):
    """WalkEntry(path, kind, ..., ctime_ns, mount_point) from a RawEntry."""
    cdef object record = PyType_GenericAlloc(_ENTRY, 0)
    _store(record, _OFFSETS[0], path)
    _store(record, _OFFSETS[1], _KINDS[file_kind(raw.mode)])
    _store(record, _OFFSETS[2], raw.mode)
    _store(record, _OFFSETS[3], raw.size)
    _store(record, _OFFSETS[4], raw.dev)
    _store(record, _OFFSETS[5], raw.ino)
    _store(record, _OFFSETS[6], raw.nlink)
    _store(record, _OFFSETS[7], raw.mtime_ns)
    _store(record, _OFFSETS[8], raw.ctime_ns)
    _store(record, _OFFSETS[9], True if raw.mount_point else False)
    return record


cdef int _by_name(const void* a, const void* b) noexcept nogil:
    return strcmp((<const RawEntry*>a).name, (<const RawEntry*>b).name)


cdef void _free_listing(Listing* listing) noexcept nogil:
    free(listing.names)
    free(listing.entries)
    listing.names = NULL
    listing.entries = NULL


cdef int _append(Listing* listing, const char* name) noexcept nogil:
    """Copy one name into the listing; ENOMEM or 0."""
    cdef size_t length = strlen(name) + 1
    cdef size_t cap
    cdef void* grown
    if listing.names_len + length > listing.names_cap:
        cap = listing.names_cap * 2 if listing.names_cap else 4096
        while cap < listing.names_len + length:
            cap *= 2
        grown = realloc(listing.names, cap)
        if grown == NULL:
            return ENOMEM
        listing.names = <char*>grown
        listing.names_cap = cap
    if listing.count == listing.cap:
        cap = listing.cap * 2 if listing.cap else 64
        grown = realloc(listing.entries, cap * sizeof(RawEntry))
        if grown == NULL:
            return ENOMEM
        listing.entries = <RawEntry*>grown
        listing.cap = cap
    memcpy(listing.names + listing.names_len, name, length)
    listing.entries[listing.count].name_off = listing.names_len
    listing.names_len += length
    listing.count += 1
    return 0


cdef int _lstat(int fd, const char* name, const Mounts* mounts, uint64_t mnt_id,
                RawEntry* entry) noexcept nogil:
    """lstat `name` into `entry` (with its mount_point): 0, or the errno."""
    cdef struct_stat st
    cdef struct_statx stx
    if mounts.use_statx:
        # statx in place of fstatat, not beside it: the mount id costs no syscall. No automount
        # (fstatat triggers none either).
        if statx(fd, name, AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT,
                 STATX_BASIC_STATS | STATX_MNT_ID, &stx) != 0:
            return errno
        entry.mode = stx.stx_mode
        entry.size = <off_t>stx.stx_size
        entry.dev = statx_dev(&stx)
        entry.ino = stx.stx_ino
        entry.nlink = stx.stx_nlink
        entry.mtime_ns = <int64_t>stx.stx_mtime.tv_sec * 1000000000 + stx.stx_mtime.tv_nsec
        entry.ctime_ns = <int64_t>stx.stx_ctime.tv_sec * 1000000000 + stx.stx_ctime.tv_nsec
        entry.mount_point = stx.stx_mnt_id != mnt_id
        return 0
    if fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0:
        return errno
    entry.mode = st.st_mode
    entry.size = st.st_size
    entry.dev = st.st_dev
    entry.ino = st.st_ino
    entry.nlink = st.st_nlink
    entry.mtime_ns = <int64_t>st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec
    entry.ctime_ns = <int64_t>st.st_ctim.tv_sec * 1000000000 + st.st_ctim.tv_nsec
    entry.mount_point = False
    return 0


cdef int _read_dir(int root_fd, const char* rel, Listing* listing,
                   const Mounts* mounts) noexcept nogil:
    """Read and lstat every entry of `rel` into `listing`, sorted; 0 or the errno that stopped it.

    Per-entry lstat failures (an entry removed since readdir) are kept as the entry's `err`.
    """
    cdef int fd = open_beneath(root_fd, rel, O_RDONLY | O_DIRECTORY, &_openat2_state)
    cdef char buffer[_DENTS_BUFFER]
    cdef long length, at
    cdef scanroot_dirent64* found
    cdef const char* name
    cdef struct_statx own
    cdef uint64_t mnt_id = mounts.mnt_id
    cdef RawEntry* entry
    cdef size_t i
    cdef int err = 0
    if fd < 0:
        return errno
    if mounts.use_statx and mounts.own:
        # one_file_system=False only: the walk enters mounts, so this directory's may differ.
        if statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &own) != 0:
            err = errno
            close(fd)
            return err
        mnt_id = own.stx_mnt_id
    # getdents64 itself rather than fdopendir/readdir: the same records, without the fstat and
    # fcntl fdopendir makes and the buffer it mallocs, per directory (~12% of a walk's syscalls).
    while not err:
        length = getdents64(fd, buffer, _DENTS_BUFFER)
        if length < 0:
            if errno == EINTR:
                continue
            err = errno
            break
        if length == 0:
            break  # the end of the directory
        at = 0
        while at < length:
            found = <scanroot_dirent64*>(buffer + at)
            at += found.d_reclen
            name = found.d_name
            if name[0] == 46 and (name[1] == 0 or (name[1] == 46 and name[2] == 0)):  # . and ..
                continue
            err = _append(listing, name)
            if err:
                break
    if not err:
        for i in range(listing.count):
            entry = &listing.entries[i]
            entry.name = listing.names + entry.name_off
            entry.err = _lstat(fd, entry.name, mounts, mnt_id, entry)
        qsort(listing.entries, listing.count, sizeof(RawEntry), _by_name)
    close(fd)
    return err


cdef object _error(bytes path, int err):
    return WalkError(path, err, os.strerror(err))


cdef struct Unchanged:
    # walk(unchanged=..., matched=...): borrowed from walk's frame, which outlives every use.
    PyObject* known      # dict path -> (dev, ino, size, mtime_ns, ctime_ns, mode, ...), or NULL
    PyObject* matched    # list the paths of unchanged regular files are appended to
    PyObject* skipped    # frozenset of walk's `skip` paths: those are never matched either
    PyObject* inner      # frozenset of mountinfo's mount points below the root (no statx), or NULL


cdef bint _same_identity(object recorded, RawEntry* raw):
    """True when `recorded`'s first six items are this entry's identity (a tuple of ints)."""
    if type(recorded) is not tuple or PyTuple_GET_SIZE(recorded) < 6:
        return False
    cdef object dev = <object>PyTuple_GET_ITEM(recorded, 0)
    cdef object ino = <object>PyTuple_GET_ITEM(recorded, 1)
    cdef object size = <object>PyTuple_GET_ITEM(recorded, 2)
    cdef object mtime = <object>PyTuple_GET_ITEM(recorded, 3)
    cdef object ctime = <object>PyTuple_GET_ITEM(recorded, 4)
    cdef object mode = <object>PyTuple_GET_ITEM(recorded, 5)
    if not (type(dev) is int and type(ino) is int and type(size) is int and type(mtime) is int
            and type(ctime) is int and type(mode) is int):
        return False
    # Compared as Python ints (exact for any width), cheapest field first.
    return (ctime == raw.ctime_ns and mtime == raw.mtime_ns and ino == raw.ino
            and size == raw.size and mode == raw.mode and dev == raw.dev)


cdef object _records(bytes rel, Listing* listing, int err, Unchanged* unchanged):
    """One directory's entries as Python records, or the WalkError that kept it from being read.
    A regular file whose identity `unchanged` records is not built: its path goes to matched."""
    cdef size_t i
    cdef RawEntry* entry
    cdef bytes prefix = rel + b"/" if rel else b""
    cdef list records
    cdef PyObject* recorded
    if err == ENOMEM:
        raise MemoryError()
    if err:
        return _error(rel, err)
    records = []
    for i in range(listing.count):
        entry = &listing.entries[i]
        path = prefix + <bytes>entry.name
        if entry.err:
            records.append(_error(path, entry.err))
            continue
        if unchanged.inner != NULL and path in <frozenset>unchanged.inner:
            entry.mount_point = True
        if unchanged.known != NULL and S_ISREG(entry.mode) and not entry.mount_point:
            recorded = PyDict_GetItem(<object>unchanged.known, path)
            if (
                recorded != NULL
                and _same_identity(<object>recorded, entry)
                and path not in <frozenset>unchanged.skipped
            ):
                (<list>unchanged.matched).append(path)
                continue
        records.append(_entry(path, entry))
    return records


cdef struct Batch:
    # Directories read side by side (_list_dirs): claimed one at a time from `next`.
    int root_fd
    const Mounts* mounts
    const char** rels
    Listing* listings
    int* errs
    size_t count
    size_t next


cdef void* _batch_worker(void* arg) noexcept nogil:
    cdef Batch* batch = <Batch*>arg
    cdef size_t i
    while True:
        i = claim(&batch.next, 1)
        if i >= batch.count:
            return NULL
        batch.errs[i] = _read_dir(batch.root_fd, batch.rels[i], &batch.listings[i], batch.mounts)


cdef list _list_dirs(int root_fd, list rels, int threads, Unchanged* unchanged,
                     const Mounts* mounts):
    """_records of every directory in `rels`, read by up to `threads` threads (this one too).

    GIL released: directory reads and one statx per entry, all syscalls (and waits on a cold
    disk); on 1M files in 100k directories they are ~80% of the walk's CPU, so a second thread
    nearly halves its wall time. If a thread cannot start, the others read its share.
    """
    cdef Batch batch
    cdef size_t count = len(rels), i
    cdef list targets = [rel if rel else b"." for rel in rels]
    batch.root_fd = root_fd
    batch.mounts = mounts
    batch.count = count
    batch.next = 0
    batch.rels = <const char**>malloc(count * sizeof(char*) + 1)
    batch.listings = <Listing*>calloc(count + 1, sizeof(Listing))
    batch.errs = <int*>calloc(count + 1, sizeof(int))
    try:
        if batch.rels == NULL or batch.listings == NULL or batch.errs == NULL:
            raise MemoryError()
        for i in range(count):
            batch.rels[i] = <bytes>targets[i]
        threads = min(threads, <int>count)
        if count < _THREADED_DIRS:
            # Starting and joining a thread costs more than reading a few small directories:
            # on bookworm-apps (12.6k entries, mostly short batches) it doubled the walk's wall.
            threads = 1
        with nogil:
            run_on_threads(_batch_worker, &batch, threads)
        return [
            _records(rels[i], &batch.listings[i], batch.errs[i], unchanged) for i in range(count)
        ]
    finally:
        if batch.listings != NULL:
            for i in range(count):
                _free_listing(&batch.listings[i])
        free(batch.listings)
        free(batch.errs)
        free(<void*>batch.rels)


cdef object _list_dir(int root_fd, bytes rel, Unchanged* unchanged, const Mounts* mounts):
    """Entries of one directory as Python records, or the WalkError that kept it from being read."""
    return _list_dirs(root_fd, [rel], 1, unchanged, mounts)[0]


cdef bint _mount_id(int fd, uint64_t* mnt_id):
    """True, with fd's mount id, when statx gives mount ids (Linux >= 5.8, and no seccomp
    filter refusing statx); False when they must come from mountinfo."""
    cdef struct_statx stx
    if _statx_state < 0 or statx(fd, "", AT_EMPTY_PATH, STATX_MNT_ID, &stx) != 0:
        return False
    mnt_id[0] = stx.stx_mnt_id
    return (stx.stx_mask & STATX_MNT_ID) != 0


def walk(root, *, skip=(), bint one_file_system=True, unchanged=None, list matched=None):
    """Every entry below `root`, depth-first pre-order, names sorted as bytes; errors as data.

    walk(root: str | bytes, *, skip: Collection[bytes] = (), one_file_system: bool = True,
         unchanged: Mapping[bytes, tuple] | None = None, matched: list[bytes] | None = None)
        -> Iterator[WalkEntry | WalkError]

    Symlinks are yielded, never followed. Paths in `skip` are neither yielded nor descended.
    A mount point (another file system, or a bind mount of the same one: statx's mount id
    differs from its directory's; without it, /proc/self/mountinfo's mount points below the
    root) is yielded with `mount_point` set; with `one_file_system`, it is not descended, nor is
    a directory on another device (a btrfs subvolume), and it is never matched (below).
    A regular file whose (dev, ino, size, mtime_ns, ctime_ns, mode) are the first six items of
    `unchanged[path]` is not yielded: its path is appended to `matched` instead (complete once
    the walk is exhausted; a rescan's unchanged files cost no entry object).
    Raises OSError only when `root` itself cannot be opened.
    """
    cdef frozenset skipped = frozenset([bytes(path) for path in skip])
    cdef Unchanged identities
    if unchanged is not None and matched is None:
        raise TypeError("walk: `unchanged` needs a `matched` list")
    if unchanged is not None and type(unchanged) is not dict:
        unchanged = dict(unchanged)  # any Mapping; looked up with PyDict_GetItem below
    identities.known = <PyObject*>unchanged if unchanged else NULL
    identities.matched = <PyObject*>matched
    identities.skipped = <PyObject*>skipped
    identities.inner = NULL
    cdef Mounts mount_ids
    cdef frozenset inner = None
    cdef int root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    cdef list stack, listing, wanted
    cdef Py_ssize_t position, ahead
    cdef object below
    cdef dict read_ahead = {}  # directory path -> its records, read with its earlier sibling
    cdef int threads = cpus.cpu_limit() or cpus.usable_cpus()
    cdef long budget
    threads = 1 if threads < 2 else 2
    try:
        root_dev = os.fstat(root_fd).st_dev
        mount_ids.mnt_id = 0
        mount_ids.use_statx = _mount_id(root_fd, &mount_ids.mnt_id)
        mount_ids.own = not one_file_system
        if not mount_ids.use_statx:
            # Read once; without /proc either, only another device tells a mount point.
            inner = mounts.mount_points(root_fd)
            if inner:
                identities.inner = <PyObject*>inner
        first = _list_dir(root_fd, b"", &identities, &mount_ids)
        if isinstance(first, WalkError):
            raise OSError(first.errno, first.message, os.fsdecode(root))
        # [listing, next index] per open level: memory is the listings along the current path.
        stack = [[first, 0]]
        while stack:
            level = stack[len(stack) - 1]
            listing = level[0]
            position = level[1]
            if position == len(listing):
                stack.pop()
                continue
            item = listing[position]
            level[1] = position + 1
            if item.path in skipped:
                continue
            yield item
            if (
                type(item) is WalkEntry
                and item.kind is FileKind.DIRECTORY
                and (not one_file_system or (item.dev == root_dev and not item.mount_point))
            ):
                below = read_ahead.pop(item.path, None)
                if below is None:
                    # Read this directory and the next sibling directories this walk will enter
                    # (in listing order) side by side, while their total st_size stays under
                    # _AHEAD_BYTES: held at most one batch per level, a bounded amount.
                    wanted = [item.path]
                    budget = _AHEAD_BYTES - item.size
                    ahead = position + 1
                    while threads > 1 and ahead < len(listing) and len(wanted) < _AHEAD_DIRS:
                        sibling = listing[ahead]
                        ahead += 1
                        if (
                            type(sibling) is WalkEntry
                            and sibling.kind is FileKind.DIRECTORY
                            and (
                                not one_file_system
                                or (sibling.dev == root_dev and not sibling.mount_point)
                            )
                            and sibling.path not in skipped
                        ):
                            budget -= sibling.size
                            if budget < 0:
                                break
                            wanted.append(sibling.path)
                    found = _list_dirs(root_fd, wanted, threads, &identities, &mount_ids)
                    below = found[0]
                    for i in range(1, len(wanted)):
                        read_ahead[wanted[i]] = found[i]
                if type(below) is WalkError:
                    yield below
                else:
                    stack.append([below, 0])
    finally:
        os.close(root_fd)


def _use_statx(bint enabled):
    """Testing hook: False forces the mountinfo fallback used on kernels without STATX_MNT_ID."""
    global _statx_state
    _statx_state = 0 if enabled else -1


def _use_openat2(bint enabled):
    """Testing hook: False forces the component-wise fallback used on kernels without openat2."""
    global _openat2_state
    _openat2_state = 0 if enabled else -1
