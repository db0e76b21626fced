# cython: language_level=3
"""xxHash's XXH3-128 streaming API, header-only (xxh_inline.h defines XXH_INLINE_ALL)."""


cdef extern from "xxh_inline.h" nogil:
    ctypedef struct XXH3_state_t:
        pass
    ctypedef struct XXH128_hash_t:
        unsigned long long low64
        unsigned long long high64
    ctypedef struct XXH128_canonical_t:
        unsigned char digest[16]
    XXH3_state_t* XXH3_createState()
    int XXH3_freeState(XXH3_state_t* state)
    int XXH3_128bits_reset(XXH3_state_t* state)
    int XXH3_128bits_update(XXH3_state_t* state, const void* data, size_t length)
    XXH128_hash_t XXH3_128bits_digest(const XXH3_state_t* state)
    # Big-endian bytes: what python-xxhash's xxh3_128().digest() returns.
    void XXH128_canonicalFromHash(XXH128_canonical_t* out, XXH128_hash_t hash)
