# cython: language_level=3
from _native.ac cimport ac_automaton


cdef class Matcher:
    cdef ac_automaton automaton
    cdef readonly tuple patterns
    cdef bint built

    cdef const ac_automaton* c_automaton(self) noexcept
