# cython: language_level=3
"""Multi-buffer MD5 kernels (md5_multi.c): one MD5 stream per SIMD lane, AVX2 or AVX-512."""

from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef extern from "md5_multi.h" nogil:
    enum:
        MD5MB_MAX_LANES
        MD5MB_NONE
        MD5MB_KERNELS
    ctypedef struct md5mb_state:
        uint32_t abcd[4][MD5MB_MAX_LANES]
    ctypedef void (*md5mb_kernel)(md5mb_state* state, const uint8_t* const* block_ptrs,
                                  size_t nblocks) noexcept nogil
    const char* md5mb_name(int id)
    int md5mb_lanes(int id)
    md5mb_kernel md5mb_get(int id)
    int md5mb_best()
    void md5mb_scalar(md5mb_state* state, int lane, const uint8_t* p, size_t n)
    void md5mb_init_lane(md5mb_state* state, int lane)
    void md5mb_digest(const md5mb_state* state, int lane, unsigned char* out)
    size_t md5mb_pad(unsigned char* tail, size_t length, uint64_t total)
