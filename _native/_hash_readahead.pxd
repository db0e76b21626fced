# cython: language_level=3
"""The hasher's read-ahead thread: posix_fadvise(WILLNEED) ahead of phase 3's workers."""

from _native._hashjob cimport Job


cdef void* prefetcher(void* arg) noexcept nogil
cdef void readahead_setup(Job* job) noexcept
cdef void readahead_record(Job* job) noexcept
