# cython: language_level=3
"""Multi-buffer MD5 for the hasher: one MD5-only file per SIMD lane, and the kernel in use."""

from _native._hashjob cimport Job, Parent, Scratch
from _native.openssl cimport EVP_MD_CTX


cdef void md5_lanes(Job* job, Parent* parent, Scratch* scratch, EVP_MD_CTX** contexts,
                    bint ready) noexcept nogil
cdef void lanes_setup(Job* job) noexcept
cdef bint simd_active() noexcept
