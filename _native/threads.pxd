# cython: language_level=3
"""pthread declarations, the one atomic the work queues need, and running a worker on threads."""


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


cdef enum:
    MAX_THREADS = 64


cdef inline void run_on_threads(void* (*worker)(void*) noexcept nogil, void* arg,
                                int count) noexcept nogil:
    """worker(arg) on `count` threads (at most MAX_THREADS), this one included, all joined before
    it returns. A worker claims work until none is left, so if a thread cannot start, the ones
    that run take its share."""
    cdef pthread_t helpers[MAX_THREADS]
    cdef int started = 0, i
    if count > MAX_THREADS:
        count = MAX_THREADS
    while started < count - 1:
        if pthread_create(&helpers[started], NULL, worker, arg) != 0:
            break
        started += 1
    worker(arg)
    for i in range(started):
        pthread_join(helpers[i], NULL)
