# cython: language_level=3
"""pthread declarations and the one atomic the hasher's work queue needs."""


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_attr_t
    int pthread_create(pthread_t* thread, const pthread_attr_t* attr,
                       void* (*start)(void*) noexcept nogil, void* arg)
    int pthread_join(pthread_t thread, void** retval)


cdef extern from *:
    """
    #include <stddef.h>
    /* The whole work queue: workers claim the next `n` indices. Relaxed is enough, the
       counter orders nothing else; pthread_join publishes the results. */
    static inline size_t scanroot_claim(size_t *next, size_t n) {
        return __atomic_fetch_add(next, n, __ATOMIC_RELAXED);
    }
    """
    size_t claim "scanroot_claim"(size_t* next, size_t n) noexcept nogil
