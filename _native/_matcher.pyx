# cython: language_level=3, boundscheck=False, wraparound=False
"""Cython multi-pattern literal matcher: Aho-Corasick compiled to a dense DFA (ac.h).

Why hand-written rather than pyahocorasick or hyperscan: the content checks' markers are found
inside the hasher's read loop, on worker threads with the GIL released, from the same buffer the
digests are computed on (each file is read once for every check). pyahocorasick needs the GIL
and a Python call per buffer; hyperscan is not in Debian for every architecture Fargate runs
(it is x86-only) and its callback model fits the nogil loop no better. A 256-wide DFA does one
table lookup per byte, which is what a few dozen literals need.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from _native.ac cimport ac_automaton, ac_build, ac_feed, ac_free, ac_hit

__all__ = ["Matcher"]


cdef class Matcher:
    """Finds every occurrence of any of `patterns` (non-empty bytes) in data, streaming."""

    def __cinit__(self, patterns):
        cdef list checked = []
        for pattern in patterns:
            if not isinstance(pattern, bytes) or not pattern:
                raise ValueError(f"a pattern must be non-empty bytes, not {pattern!r}")
            checked.append(pattern)
        if not checked:
            raise ValueError("a matcher needs at least one pattern")
        self.patterns = tuple(checked)
        cdef uint32_t n = len(self.patterns)
        cdef const uint8_t** pointers = <const uint8_t**>malloc(n * sizeof(uint8_t*))
        cdef size_t* lengths = <size_t*>malloc(n * sizeof(size_t))
        cdef uint32_t i
        if pointers == NULL or lengths == NULL:
            free(pointers)
            free(lengths)
            raise MemoryError()
        for i in range(n):
            pointers[i] = <const uint8_t*>PyBytes_AS_STRING(self.patterns[i])
            lengths[i] = PyBytes_GET_SIZE(self.patterns[i])
        status = ac_build(&self.automaton, pointers, lengths, n)
        free(pointers)
        free(lengths)
        if status != 0:
            raise MemoryError()
        self.built = True

    def __dealloc__(self):
        if self.built:
            ac_free(&self.automaton)

    cdef const ac_automaton* c_automaton(self) noexcept:
        return &self.automaton

    @property
    def max_length(self) -> int:
        return self.automaton.max_length

    def find_all(self, data, size_t max_hits=1 << 20):
        """[(pattern index, start offset)] in (end offset, pattern index) order, and the total."""
        cdef bytes raw = bytes(data)
        cdef uint32_t state = 0
        cdef size_t stored = 0
        cdef uint64_t total = 0
        # No more hits can exist than positions times patterns: bound the allocation by that.
        cdef size_t possible = <size_t>PyBytes_GET_SIZE(raw) * self.automaton.npatterns + 1
        cdef size_t room = max_hits if max_hits < possible else possible
        cdef const uint8_t* start = <const uint8_t*>PyBytes_AS_STRING(raw)
        cdef size_t length = PyBytes_GET_SIZE(raw)
        cdef ac_hit* hits = <ac_hit*>malloc(room * sizeof(ac_hit) + 1)
        if hits == NULL:
            raise MemoryError()
        try:
            with nogil:  # the DFA walk touches no Python object
                ac_feed(&self.automaton, &state, start, length, 0, hits, room, &stored, &total)
            return [(hits[i].pattern, hits[i].start) for i in range(stored)], total
        finally:
            free(hits)
