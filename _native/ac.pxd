# cython: language_level=3
"""Declarations of ac.h, the Aho-Corasick DFA shared by the matcher and the hasher."""

from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef extern from "ac.h" nogil:
    ctypedef struct ac_hit:
        uint32_t pattern
        uint64_t start

    ctypedef struct ac_automaton:
        uint32_t nstates
        uint32_t npatterns
        uint32_t max_length

    int ac_build(ac_automaton* a, const uint8_t* const* patterns, const size_t* lengths, uint32_t n)
    void ac_free(ac_automaton* a)
    void ac_feed(const ac_automaton* a, uint32_t* state, const uint8_t* buf, size_t n,
                 uint64_t base, ac_hit* hits, size_t max_hits, size_t* stored, uint64_t* total)
