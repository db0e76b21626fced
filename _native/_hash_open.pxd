# cython: language_level=3
"""Opening the hasher's files beneath the root: parents, lstat (phase 1), representatives."""

from _native._hashjob cimport Job, Parent, Placed, Request


cdef int parent_fd(Job* job, Parent* parent, Request* request) noexcept nogil
cdef void lstat_one(Job* job, Parent* parent, Request* request) noexcept nogil
cdef int open_file(int dir_fd, const char* name) noexcept nogil
cdef Placed* placed_extent(Job* job, Request* request) noexcept nogil
cdef int open_rep(Job* job, Parent* parent, Request* request) noexcept nogil
