# cython: language_level=3
"""The hasher's worker pool: each phase on threads, and phase 2's plan of what to read in which order."""

from _native._hashjob cimport Job, Request
from _native.posix cimport dev_t, ino_t, off_t


cdef struct Inode:
    dev_t dev
    ino_t ino
    size_t index


cdef struct Sized:
    off_t size
    size_t index


cdef void run(Job* job, int jobs) noexcept nogil
cdef size_t group(Request* requests, size_t count, Inode* inodes, size_t* reps) noexcept nogil
cdef size_t big_first(Request* requests, size_t* reps, size_t count, Sized* scratch) noexcept nogil
